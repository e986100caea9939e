"""The training pipeline: validate_data -> [tune ->] train -> evaluate.

`build_training_pipeline()` returns the pipeline for one image and one
hardware choice; `pipelines/compile.py` compiles it to
build/training_pipeline.yaml, which `kfp run create` submits and
`pipelines/run_local.py` runs under `kfp.local`. Every hyperparameter is a
pipeline parameter whose default is the TrainConfig default (read from the
dataclass, never retyped).
"""


from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Metrics, Model

from components import DEFAULT_IMAGE, build_components, document_fields
from pipelines.credentials import use_gcs_secret
from pipelines.task_settings import DEFAULT_RESOURCES, TaskResources, retry_if_safe, set_resources
from rnn_classifier.config import DEFAULTS, field_names
from rnn_classifier.search_space import (
    DEFAULT_ALGORITHM,
    DEFAULT_MAX_TRIALS,
    DEFAULT_PARALLEL_TRIALS,
    SEARCH_SPACE,
)

PIPELINE_NAME = "rnn-classifier-training"


class TrainingOutputs(NamedTuple):
    """What a run hands back: the model, its test metrics and the HTML report."""

    model: Model
    test_metrics: Metrics
    report: HTML


def build_training_pipeline(image: str = DEFAULT_IMAGE, gpu: bool = False,
                            node_selector: "dict[str, str] | None" = None,
                            tolerations: "list[dict[str, str]] | None" = None,
                            gcs_secret: str | None = None,
                            resources: TaskResources = DEFAULT_RESOURCES):
    """The training pipeline on `image`.

    Args:
        image: Container image holding the package (docker/Dockerfile).
        gpu: Request one nvidia.com/gpu for the train step.
        node_selector: Node labels the train step must run on (e.g. a GPU pool).
        tolerations: Taints the train step tolerates, as dicts of
            kfp-kubernetes `add_toleration` arguments (key, operator, value,
            effect).
        gcs_secret: Kubernetes secret holding a service-account key.json, mounted
            on fingerprint_data and validate_data (which read gs://); None:
            Workload Identity.
        resources: CPU, memory and deadline of the train and tune steps.
    """
    ops = build_components(image)
    # Each Katib trial is scheduled and sized as the train step.
    trial_scheduling = {"node_selector": dict(node_selector or {}),
                        "tolerations": list(tolerations or []),
                        "cpu": resources.cpu, "memory": resources.memory}

    def training_pipeline(
        data_uri: str,
        sweep: bool = False,
        katib_on_cluster: bool = True,
        katib_namespace: str = "",
        sweep_algorithm: str = DEFAULT_ALGORITHM,
        sweep_max_trials: int = DEFAULT_MAX_TRIALS,
        sweep_parallel_trials: int = DEFAULT_PARALLEL_TRIALS,
        sweep_timeout_hours: float = 6.0,
        sweep_delete_experiment: bool = True,
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
    ) -> TrainingOutputs:
        """Validate the data, optionally sweep with Katib, train, evaluate.

        Args:
            data_uri: Data folder (local path or gs://BUCKET/PREFIX) in the
                nine-file .npy contract.
            sweep: Run a Katib hyperparameter sweep and train with its best values.
            katib_on_cluster: Create a Katib Experiment (False: run the same
                Experiment's trials inside the step, e.g. under kfp.local).
            katib_namespace: Namespace of the Experiment ("" = the run's).
            sweep_algorithm: Katib algorithm (tpe, random, grid, cmaes, sobol...).
            sweep_max_trials: Maximum number of trials.
            sweep_parallel_trials: Trials run at the same time.
            sweep_timeout_hours: Fail the tune step after this long.
            sweep_delete_experiment: Delete the Katib Experiment once it has ended
                (False: keep it, and its trials, for inspection).
        """
        hyperparameters = {name: value for name, value in locals().items()
                           if name in field_names()}
        # The data under data_uri can change between runs: the cache key of
        # validate_data (and so of every later step) includes what it is now.
        fingerprinted = ops.fingerprint_data(data_uri=data_uri)
        fingerprinted.set_display_name("fingerprint data")
        fingerprinted.set_caching_options(False)
        retry_if_safe(fingerprinted, "fingerprint_data")
        use_gcs_secret(fingerprinted, gcs_secret)
        validated = ops.validate_data(data_uri=data_uri, mixed=mixed, mask_value=mask_value,
                                      data_fingerprint=fingerprinted.output)
        validated.set_display_name("validate data")
        retry_if_safe(validated, "validate_data")
        use_gcs_secret(validated, gcs_secret)
        dataset = validated.outputs["dataset"]
        # The tune step always runs and hands its values to the one train step:
        # with sweep off it returns the given hyperparameters unchanged. (Branches
        # joined by dsl.OneOf would be tidier, but kfp.local cannot run a OneOf
        # of artifacts, and the local run is how this pipeline is tested.)
        tuned = ops.tune(dataset=dataset, sweep=sweep, on_cluster=katib_on_cluster,
                         namespace=katib_namespace, algorithm=sweep_algorithm,
                         max_trials=sweep_max_trials, parallel_trials=sweep_parallel_trials,
                         timeout_hours=sweep_timeout_hours, trial_image=image, trial_gpu=gpu,
                         trial_scheduling=trial_scheduling,
                         delete_experiment=sweep_delete_experiment, **hyperparameters)
        tuned.set_display_name("tune (Katib)")
        retry_if_safe(set_resources(tuned, resources), "tune")
        best = {parameter.name: tuned.outputs[parameter.name] for parameter in SEARCH_SPACE}
        trained = ops.train(dataset=dataset, **{**hyperparameters, **best})
        trained.set_display_name("train")
        set_resources(trained, resources)
        configure_training_hardware(trained, gpu, node_selector, tolerations)
        model = trained.outputs["model"]
        evaluated = ops.evaluate(dataset=dataset, model=model)
        evaluated.set_display_name("evaluate")
        retry_if_safe(evaluated, "evaluate")
        return TrainingOutputs(model=model,
                               test_metrics=evaluated.outputs["metrics"],
                               report=evaluated.outputs["report"])

    # Set before compiling: KFP reads each parameter's description from the docstring.
    document_fields(training_pipeline)
    return dsl.pipeline(name=PIPELINE_NAME, description=(
        "Recurrent-network classifier for imbalanced time series (GOTO light curves): "
        "validate the data contract, train a recurrent + convolutional network with "
        "logit-adjusted (or focal, class-weighted) loss and calibrated probabilities, "
        "evaluate per class with confusion matrix, ROC/PR and AUC against observations; "
        "optionally sweep the hyperparameters with Katib first."))(
        training_pipeline)


def configure_training_hardware(task, gpu: bool, node_selector: dict[str, str] | None,
                                tolerations: list[dict[str, str]] | None) -> None:
    """GPU request, node selector and tolerations for a training task."""
    if gpu:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    if node_selector or tolerations:
        from kfp import kubernetes

        for key, value in (node_selector or {}).items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in tolerations or []:
            kubernetes.add_toleration(task, **toleration)
