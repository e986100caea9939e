"""The `train` component: one hyperparameter argument per TrainConfig field."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train(dataset: Input[Dataset], model: Output[Model], metrics: Output[Metrics],
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
          precision: str):
    """Train the recurrent classifier; every hyperparameter is a TrainConfig field.

    Prints one `name=value` line per epoch (epoch, loss, accuracy, val_loss,
    val_accuracy, val_macro_f1, val_macro_auc) and keeps the best epoch's
    weights (early stopping on `monitor`). See `rnn-classifier train --help`
    for the meaning of each hyperparameter.

    Args:
        dataset: The validated data folder.
        model: The model folder: model.keras, config.json, scaler.json,
            classes.txt, history.csv, training_metrics.json.
        metrics: The best epoch's validation figures.
    """
    hyperparameters = dict(locals())
    from rnn_classifier.steps import train_step

    train_step(dataset.path, hyperparameters, model, metrics)
