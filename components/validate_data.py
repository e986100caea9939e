"""The `validate_data` component."""

from kfp.dsl import Dataset, Markdown, Metrics, Output


def validate_data(data_uri: str, mixed: bool, mask_value: float, dataset: Output[Dataset],
                  metrics: Output[Metrics], report: Output[Markdown], data_fingerprint: str = ""):
    """Check a data folder against the data contract and publish it as a Dataset.

    Fails with one message naming the file and the problem (missing, truncated
    or pickled file, wrong shape, NaN, padding between observations, a class
    absent from train...); nothing downstream runs then.

    Args:
        data_uri: Data folder: a local path or gs://BUCKET/PREFIX holding the nine
            {train,validation,test}_{time_features,contextual_features,labels}.npy
            files and optionally classes.txt.
        mixed: Whether the contextual (static) features are used.
        mask_value: Value padding the sequences after their last observation.
        dataset: The validated data folder (with classes.txt).
        metrics: Examples per split and class, imbalance ratio, observation-count
            quantiles, feature widths.
        report: The same figures as a Markdown table.
        data_fingerprint: What the data is (fingerprint_data's output): part of
            this step's cache key, so changed data under the same URI is read
            anew; recorded in the Dataset's metadata.
    """
    from rnn_classifier.steps import validate_step

    validate_step(data_uri, mixed, mask_value, dataset, metrics, report, data_fingerprint)
