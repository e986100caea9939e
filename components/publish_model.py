"""The `publish_model` component: every challenger goes to models/<run>/."""

from typing import NamedTuple

from kfp.dsl import Input, Model


def publish_model(model: Input[Model], bucket_uri: str, run_id: str, data_record: dict,
                  decision: dict) -> NamedTuple("PublishOutputs", [("model_uri", str),
                                                                   ("run_name", str)]):
    """Copy the challenger to models/<run>/ with its test metrics and the comparison.

    Writes models/<run>/model/ (the model folder), metrics.json and
    decision.json, whether or not the challenger is promoted.

    Args:
        model: The challenger's model folder.
        bucket_uri: gs://BUCKET (or a local folder) holding models/.
        run_id: The pipeline run's id (names the folder with the time the data
            was read).
        data_record: What ingest read.
        decision: The comparison from compare.

    Returns:
        model_uri: Where the model folder was published.
        run_name: The models/<run> folder name.
    """
    from rnn_classifier.retrain_steps import publish_step

    return publish_step(model.path, bucket_uri, run_id, data_record, decision)
