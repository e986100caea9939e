"""The retraining pipeline: ingest -> validate_data -> check_drift -> train -> evaluate
-> compare -> publish_model -> promote (or record_decision).

`build_retraining_pipeline()` returns the pipeline for one image, one
hardware choice and one credentials choice; `pipelines/compile.py` compiles
it to build/retraining_pipeline.yaml beside the training pipeline, with
which it shares the validate_data, train and evaluate components. A
recurring run (`make schedule`) starts it on a cron schedule. Every
hyperparameter is a pipeline parameter whose default is the TrainConfig
default.

Steps that read or write the bucket's current state (ingest, compare,
publish, promote, record) are never taken from the cache: with the same
arguments every day they must still see the new batches and the current
champion.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Markdown, Metrics, Model

from components import DEFAULT_IMAGE, build_components, document_fields
from pipelines.credentials import use_gcs_secret
from pipelines.task_settings import DEFAULT_RESOURCES, TaskResources, retry_if_safe, set_resources
from pipelines.training_pipeline import configure_training_hardware
from rnn_classifier.config import DEFAULTS, field_names
from rnn_classifier.drift import DEFAULT_THRESHOLD
from rnn_classifier.retrain import (
    DEFAULT_MIN_DELTA,
    DEFAULT_PROMOTION_METRIC,
    DEFAULT_RECALL_TOLERANCE,
)

PIPELINE_NAME = "rnn-classifier-retraining"


class RetrainingOutputs(NamedTuple):
    """What a run hands back: the challenger, its test metrics and the decision."""

    model: Model
    test_metrics: Metrics
    decision: Markdown


def build_retraining_pipeline(image: str = DEFAULT_IMAGE, gpu: bool = False,
                              node_selector: "dict[str, str] | None" = None,
                              tolerations: "list[dict[str, str]] | None" = None,
                              gcs_secret: str | None = None,
                              resources: TaskResources = DEFAULT_RESOURCES):
    """The retraining pipeline on `image`.

    Args:
        image: Container image holding the package (docker/Dockerfile).
        gpu: Request one nvidia.com/gpu for the train step.
        node_selector: Node labels the train step must run on.
        tolerations: Taints the train step tolerates (kfp-kubernetes
            `add_toleration` arguments).
        gcs_secret: Kubernetes secret holding a service-account key
            (`key.json`) mounted on every task that reads or writes the bucket;
            None: Workload Identity.
        resources: CPU, memory and deadline of the train step.
    """
    ops = build_components(image)

    def retraining_pipeline(
        bucket_uri: str,
        drift_threshold: float = DEFAULT_THRESHOLD,
        promotion_metric: str = DEFAULT_PROMOTION_METRIC,
        min_delta: float = DEFAULT_MIN_DELTA,
        recall_tolerance: float = DEFAULT_RECALL_TOLERANCE,
        replace_unusable_champion: bool = False,
        mixed: bool = DEFAULTS.mixed,
        mask_value: float = DEFAULTS.mask_value,
        scaling: str = DEFAULTS.scaling,
        time_column: int = DEFAULTS.time_column,
        rnn_type: str = DEFAULTS.rnn_type,
        rnn_layers: int = DEFAULTS.rnn_layers,
        rnn_units: int = DEFAULTS.rnn_units,
        bidirectional: bool = DEFAULTS.bidirectional,
        pooling: str = DEFAULTS.pooling,
        max_rnn_steps: int = DEFAULTS.max_rnn_steps,
        conv_filters: int = DEFAULTS.conv_filters,
        conv_layers: int = DEFAULTS.conv_layers,
        augmentation: str = DEFAULTS.augmentation,
        conv_dilation: int = DEFAULTS.conv_dilation,
        curve_normalisation: bool = DEFAULTS.curve_normalisation,
        summary_statistics: bool = DEFAULTS.summary_statistics,
        random_kernels: int = DEFAULTS.random_kernels,
        dropout: float = DEFAULTS.dropout,
        l2: float = DEFAULTS.l2,
        dense_units: int = DEFAULTS.dense_units,
        context_units: int = DEFAULTS.context_units,
        context_bins: int = DEFAULTS.context_bins,
        loss: str = DEFAULTS.loss,
        prior_weight: float = DEFAULTS.prior_weight,
        gamma: float = DEFAULTS.gamma,
        class_weighting: str = DEFAULTS.class_weighting,
        effective_beta: float = DEFAULTS.effective_beta,
        label_smoothing: float = DEFAULTS.label_smoothing,
        calibration: str = DEFAULTS.calibration,
        learning_rate: float = DEFAULTS.learning_rate,
        batch_size: int = DEFAULTS.batch_size,
        lr_schedule: str = DEFAULTS.lr_schedule,
        ema_momentum: float = DEFAULTS.ema_momentum,
        min_steps_per_epoch: int = DEFAULTS.min_steps_per_epoch,
        epochs: int = DEFAULTS.epochs,
        patience: int = DEFAULTS.patience,
        monitor: str = DEFAULTS.monitor,
        seed: int = DEFAULTS.seed,
        bucket_by_length: bool = DEFAULTS.bucket_by_length,
        precision: str = DEFAULTS.precision,
    ) -> RetrainingOutputs:
        """Merge new batches, validate, check drift, train, evaluate, compare, promote.

        Args:
            bucket_uri: gs://BUCKET holding survey/reference/, survey/batches/<date>/
                and models/ (see the README's bucket layout).
            drift_threshold: Largest population stability index of any drift
                measure; above it the run stops before training.
            promotion_metric: Test score the challenger must improve: accuracy,
                balanced_accuracy, macro_f1, macro_roc_auc or ece (lower is better).
            min_delta: Smallest improvement of promotion_metric that promotes.
            recall_tolerance: Largest drop of any rare class's test recall allowed.
            replace_unusable_champion: A champion whose model folder is damaged or
                does not fit the data stops the run with the pointer unchanged
                (false), or is treated as absent and replaced (true).
        """
        hyperparameters = {name: value for name, value in locals().items()
                           if name in field_names()}
        ingested = ops.ingest(bucket_uri=bucket_uri, mixed=mixed, mask_value=mask_value)
        ingested.set_display_name("ingest batches")
        retry_if_safe(ingested, "ingest")
        validated = ops.validate_data(data_uri=ingested.outputs["data_uri"], mixed=mixed,
                                      mask_value=mask_value)
        validated.set_display_name("validate data")
        retry_if_safe(validated, "validate_data")
        dataset = validated.outputs["dataset"]
        drift = ops.check_drift(dataset=ingested.outputs["dataset"], mixed=mixed,
                                mask_value=mask_value, time_column=time_column,
                                threshold=drift_threshold).after(validated)
        drift.set_display_name("check drift")
        retry_if_safe(drift, "check_drift")
        trained = ops.train(dataset=dataset, **hyperparameters).after(drift)
        trained.set_display_name("train challenger")
        set_resources(trained, resources)
        configure_training_hardware(trained, gpu, node_selector, tolerations)
        model = trained.outputs["model"]
        evaluated = ops.evaluate(dataset=dataset, model=model)
        evaluated.set_display_name("evaluate challenger")
        retry_if_safe(evaluated, "evaluate")
        compared = ops.compare(dataset=dataset, model=model, bucket_uri=bucket_uri,
                               promotion_metric=promotion_metric, min_delta=min_delta,
                               recall_tolerance=recall_tolerance,
                               replace_unusable_champion=replace_unusable_champion
                               ).after(evaluated)
        compared.set_display_name("compare with champion")
        retry_if_safe(compared, "compare")
        published = ops.publish_model(model=model, bucket_uri=bucket_uri,
                                      run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                      data_record=ingested.outputs["data_record"],
                                      decision=compared.outputs["decision"])
        published.set_display_name("publish challenger")
        retry_if_safe(published, "publish_model")
        with dsl.If(compared.outputs["promote"] == True, name="promote?"):  # noqa: E712
            promoted = ops.promote(bucket_uri=bucket_uri,
                                   model_uri=published.outputs["model_uri"],
                                   run_name=published.outputs["run_name"],
                                   run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                   champion_generation=compared.outputs["champion_generation"],
                                   decision=compared.outputs["decision"],
                                   data_record=ingested.outputs["data_record"])
            promoted.set_display_name("promote to champion")
        with dsl.Else():
            recorded = ops.record_decision(
                bucket_uri=bucket_uri, run_name=published.outputs["run_name"],
                champion_generation=compared.outputs["champion_generation"],
                decision=compared.outputs["decision"])
            recorded.set_display_name("keep champion, record why")
        for task in (ingested, compared, published, promoted, recorded):
            task.set_caching_options(False)
        # validate_data reads the merged data from the pipeline root through our
        # storage code, so it needs the bucket credentials too.
        for task in (ingested, validated, compared, published, promoted, recorded):
            use_gcs_secret(task, gcs_secret)
        return RetrainingOutputs(model=model, test_metrics=evaluated.outputs["metrics"],
                                 decision=compared.outputs["report"])

    # Set before compiling: KFP reads each parameter's description from the docstring.
    document_fields(retraining_pipeline)
    return dsl.pipeline(name=PIPELINE_NAME, description=(
        "Retrain the recurrent classifier on newly labelled batches: merge them with the "
        "reference set, validate the data contract, stop on drift against the reference, "
        "train, evaluate, compare the challenger with the champion on the same test split "
        "and promote it (atomically replacing models/champion.json) when the rule allows."))(
        retraining_pipeline)
