"""The `compare` component: challenger against champion on the same test split."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output


def compare(dataset: Input[Dataset], model: Input[Model], bucket_uri: str,
            promotion_metric: str, min_delta: float, recall_tolerance: float,
            metrics: Output[Metrics], report: Output[Markdown],
            replace_unusable_champion: bool = False
            ) -> NamedTuple("CompareOutputs", [("promote", bool), ("reason", str),
                                               ("champion_generation", str),
                                               ("decision", dict)]):
    """Score the challenger and the champion (models/champion.json) on this run's test split.

    Promote when `promotion_metric` improves by at least `min_delta` and the
    recall of no rare class (every class but the most frequent) drops by more
    than `recall_tolerance`; without a champion the challenger is promoted.

    Args:
        dataset: The validated data folder (its test split is the judge).
        model: The challenger's model folder.
        bucket_uri: gs://BUCKET (or a local folder) holding models/champion.json.
        promotion_metric: accuracy, balanced_accuracy, macro_f1, macro_roc_auc or
            ece (lower is better).
        min_delta: Smallest improvement of promotion_metric that promotes.
        recall_tolerance: Largest drop of a rare class's recall that is accepted.
        metrics: Both models' figures, the improvement and the decision (1 = promote).
        report: The decision and the figures behind it as Markdown.
        replace_unusable_champion: When the champion's model folder is damaged or
            does not fit this data: false (default) fails the step and leaves
            models/champion.json unchanged; true treats it as absent, and the
            decision records why.

    Returns:
        promote: Whether the challenger becomes the champion.
        reason: The decision in one sentence, with the figures.
        champion_generation: Generation of champion.json read here ("0": none);
            the pointer is only replaced if it is still this one. A string: a
            generation can exceed the 2**53 that a pipeline number holds exactly.
        decision: Every figure of the comparison (recorded with the model).
    """
    from rnn_classifier.retrain_steps import compare_step

    return compare_step(dataset.path, model.path, bucket_uri, promotion_metric, min_delta,
                        recall_tolerance, metrics, report, replace_unusable_champion)
