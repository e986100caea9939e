"""The `promote` and `record_decision` components: the champion pointer."""


def promote(bucket_uri: str, model_uri: str, run_name: str, run_id: str,
            champion_generation: str, decision: dict, data_record: dict):
    """Make the published challenger the champion: replace models/champion.json atomically.

    The pointer is replaced only if it is still the version compare read
    (a generation precondition), so a concurrent promotion is never
    overwritten: this step then fails and the pointer is left as it is. It
    records the model URI, its metrics, the time, the data batches and the
    reason.

    Args:
        bucket_uri: gs://BUCKET (or a local folder) holding models/.
        model_uri: The published model folder.
        run_name: The models/<run> folder name.
        run_id: The pipeline run's id.
        champion_generation: Generation of champion.json read by compare ("0": none).
        decision: The comparison from compare.
        data_record: What ingest read.
    """
    from rnn_classifier.retrain_steps import promote_step

    promote_step(bucket_uri, model_uri, run_name, run_id, champion_generation, decision,
                 data_record)


def record_decision(bucket_uri: str, run_name: str, champion_generation: str,
                    decision: dict):
    """Record a refused challenger in models/champion.json (`last_decision`), atomically.

    The champion (model, metrics, data) stays; only the record of the last
    decision and its reason changes, under the same generation precondition
    as promote.

    Args:
        bucket_uri: gs://BUCKET (or a local folder) holding models/.
        run_name: The refused challenger's models/<run> folder name.
        champion_generation: Generation of champion.json read by compare.
        decision: The comparison from compare.
    """
    from rnn_classifier.retrain_steps import record_decision_step

    record_decision_step(bucket_uri, run_name, champion_generation, decision)
