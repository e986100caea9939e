"""The `check_drift` component: the new batches against the reference."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Output


def check_drift(dataset: Input[Dataset], mixed: bool, mask_value: float, time_column: int,
                threshold: float, metrics: Output[Metrics], report: Output[Markdown]):
    """Measure how far the new batches drift from the reference; stop the run above threshold.

    Population stability index (PSI, quantile bins of the reference) and
    Kolmogorov-Smirnov statistic of every time feature at real steps and
    every contextual feature; PSI of the class balance (with its total
    variation distance), of the number of observations per light curve and,
    with a time column, of the time between observations. The step fails
    when any PSI exceeds `threshold`; the table is also printed to its log.

    Args:
        dataset: The merged data folder from ingest (with sources.json).
        mixed: Whether the contextual (static) features are used.
        mask_value: Value padding the sequences after their last observation.
        time_column: Index of the time feature (-1: none); its dates are left
            out and its gaps measure the cadence.
        threshold: Largest PSI allowed (0.1 moderate, 0.25 significant shift).
        metrics: Every PSI and KS value, the class-balance distance, the maximum PSI.
        report: The verdict and the figures as Markdown tables.
    """
    from rnn_classifier.retrain_steps import check_drift_step

    check_drift_step(dataset.path, mixed, mask_value, time_column, threshold, metrics, report)
