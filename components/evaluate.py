"""The `evaluate` component."""

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(dataset: Input[Dataset], model: Input[Model], metrics: Output[Metrics],
             classification_metrics: Output[ClassificationMetrics], report: Output[HTML],
             summary: Output[Markdown]):
    """Evaluate the model on the test split the way astronomers judge a classifier.

    Args:
        dataset: The validated data folder.
        model: The trained model folder.
        metrics: Test accuracy, balanced accuracy, macro-F1, macro ROC-AUC,
            expected calibration error and the recall of every class.
        classification_metrics: Test confusion matrix (class names) and the ROC
            curve of the positive class (binary) or of the rarest class against
            the rest (multiclass).
        report: The full report: confusion matrices, AUC against number of
            observations, ROC and PR curves per class, reliability diagram.
        summary: Test figures and per-class precision/recall as Markdown tables.
    """
    from rnn_classifier.steps import evaluate_step

    evaluate_step(dataset.path, model.path, metrics, classification_metrics, report, summary)
