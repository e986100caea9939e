"""The `ingest` component: reference set plus labelled batches -> one merged Dataset."""

from typing import NamedTuple

from kfp.dsl import Dataset, Markdown, Metrics, Output


def ingest(bucket_uri: str, mixed: bool, mask_value: float, dataset: Output[Dataset],
           metrics: Output[Metrics], report: Output[Markdown]
           ) -> NamedTuple("IngestOutputs", [("data_uri", str), ("data_record", dict)]):
    """Merge survey/reference/ and every batch under survey/batches/ into one data folder.

    Batches are taken in date order; an object id (a batch's optional
    ids.npy) that occurs again keeps only its latest row. Batches the
    champion was not trained on are marked new (drift is measured on them).
    Fails, naming the file, when a batch folder is misnamed or a file cannot
    be read or does not fit the reference's shapes.

    Args:
        bucket_uri: gs://BUCKET (or a local folder) holding survey/ and models/.
        mixed: Whether the contextual (static) features are used.
        mask_value: Value padding the sequences after their last observation.
        dataset: The merged nine-file data folder, classes.txt and sources.json
            (which rows came from which batch).
        metrics: Examples per split, batches, new batches, duplicates removed.
        report: Rows per source as a Markdown table.

    Returns:
        data_uri: The merged data folder's URI (what validate_data checks).
        data_record: Reference, batches, new batches, latest batch, time read,
            examples per split: what the champion pointer records.
    """
    from rnn_classifier.retrain_steps import ingest_step

    return ingest_step(bucket_uri, mixed, mask_value, dataset, metrics, report)
