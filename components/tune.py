"""The `tune` component: a Katib sweep (or its local runner) -> typed best hyperparameters."""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output


def tune(dataset: Input[Dataset], experiment: Output[Artifact], metrics: Output[Metrics],
         sweep: bool, on_cluster: bool, namespace: str, algorithm: str, max_trials: int,
         parallel_trials: int, timeout_hours: float, trial_image: str, trial_gpu: bool,
         mixed: bool,
         mask_value: float,
         scaling: str,
         time_column: int,
         rnn_type: str,
         rnn_layers: int,
         rnn_units: int,
         bidirectional: bool,
         pooling: str,
         max_rnn_steps: int,
         conv_filters: int,
         conv_layers: int,
         augmentation: str,
         conv_dilation: int,
         curve_normalisation: bool,
         summary_statistics: bool,
         random_kernels: int,
         dropout: float,
         l2: float,
         dense_units: int,
         context_units: int,
         context_bins: int,
         loss: str,
         prior_weight: float,
         gamma: float,
         class_weighting: str,
         effective_beta: float,
         label_smoothing: float,
         calibration: str,
         learning_rate: float,
         batch_size: int,
         lr_schedule: str,
         ema_momentum: float,
         min_steps_per_epoch: int,
         epochs: int,
         patience: int,
         monitor: str,
         seed: int,
         bucket_by_length: bool,
         precision: str,
         trial_scheduling: dict = {},  # noqa: B006  (KFP reads the default; never mutated)
         delete_experiment: bool = True,
         ) -> NamedTuple("BestHyperparameters", [
        ("learning_rate", float),
        ("rnn_units", int),
        ("dropout", float),
        ("l2", float),
        ("gamma", float),
        ("batch_size", int),
        ("rnn_type", str),
        ("loss", str)]):
    """Sweep the hyperparameters of rnn_classifier.search_space with Katib.

    The Experiment's name is derived from this step's inputs, and it is
    dry-run first (the cluster's Katib webhook checks it); a retried step
    adopts the Experiment it created instead of launching a second sweep.

    On the cluster the step creates a Katib Experiment in the run's namespace
    (its trials read the dataset from its gs:// URI), waits for it and
    returns the optimal trial's values; without a cluster (kfp.local) it runs
    the same Experiment with the local runner. The other hyperparameters are
    held fixed at the values given. With `sweep` off it returns the given
    values unchanged and creates nothing.

    Args:
        dataset: The validated data folder.
        experiment: The Katib Experiment manifest that was run (YAML).
        metrics: The best trial's validation metrics and the number of trials.
        sweep: Run the sweep (False: pass the given hyperparameters through).
        on_cluster: Create a Katib Experiment (False: run the trials locally).
        namespace: Namespace for the Experiment ("" = this pod's namespace).
        algorithm: Katib algorithm (tpe, random, grid, multivariate-tpe, cmaes, sobol...).
        max_trials: Maximum number of trials.
        parallel_trials: Trials run at the same time.
        timeout_hours: Give up (and fail the step) after this long.
        trial_image: Image of the trial Jobs (the pipeline's image).
        trial_gpu: Each trial requests one nvidia.com/gpu.
        trial_scheduling: Node selector, tolerations, CPU and memory of each
            trial's pod, the train step's own (set at compile time), so trials
            reach the same tainted GPU pool.
        delete_experiment: Delete the Experiment (and its trials) when it has
            ended; False keeps it for inspection with kubectl.

    Returns:
        The best value of every searched hyperparameter, typed as in TrainConfig.
    """
    hyperparameters = dict(locals())
    from rnn_classifier.steps import tune_step

    return tune_step(dataset.uri, dataset.path, hyperparameters, experiment, metrics)
