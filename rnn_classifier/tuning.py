"""Run a Katib Experiment on the cluster and read back its best hyperparameters.

The pipeline's `tune` step creates the Experiment through the Kubernetes API
(`CustomObjectsApi`: the Katib SDK pins protobuf<5, which kfp and TensorFlow
cannot use), waits for it with a timeout, and returns the optimal trial's
parameter assignments converted to the TrainConfig field types. Without a
cluster the same manifest runs through the local sweep instead
(`rnn_classifier.sweep`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rnn_classifier.config import field_names, field_type

KATIB_GROUP = "kubeflow.org"
KATIB_VERSION = "v1beta1"
EXPERIMENTS = "experiments"
# Where a pod finds its own namespace (the pipeline run's namespace).
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# How often the Experiment's status is read: trials take minutes, so 30 s is plenty.
POLL_SECONDS = 30.0


class TuningError(RuntimeError):
    """The Experiment failed, timed out, or finished without an optimal trial."""


def experiment_name(dataset_uri: str, arguments: dict) -> str:
    """A DNS-label name fixed by the step's inputs: the same on every retry of one step.

    The dataset URI is the run's own artifact (gs://.../<run id>/validate-data/
    dataset), so two runs never share a name, while a retried attempt of the
    step derives the same one and adopts the Experiment instead of launching
    a second sweep.
    """
    import hashlib
    import json

    key = json.dumps({"dataset": dataset_uri, **arguments}, sort_keys=True, default=str)
    return f"rnn-sweep-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def current_namespace(namespace: str = "") -> str:
    """`namespace`, or the pod's own namespace when it is empty."""
    if namespace:
        return namespace
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    raise TuningError("no namespace given and not running in a Kubernetes pod "
                      f"({SERVICE_ACCOUNT_NAMESPACE} is missing)")


def custom_objects_api(api_server: str = ""):
    """A CustomObjectsApi: in-cluster credentials, or `api_server` (a URL) without auth."""
    from kubernetes import client, config

    if api_server:
        configuration = client.Configuration()
        configuration.host = api_server
        return client.CustomObjectsApi(client.ApiClient(configuration))
    config.load_incluster_config()
    return client.CustomObjectsApi()


def latest_condition(experiment: dict) -> dict | None:
    """The most recent condition whose status is "True" (Katib appends them in order)."""
    conditions = [condition for condition in
                  (experiment.get("status") or {}).get("conditions") or []
                  if str(condition.get("status")) == "True"]
    return conditions[-1] if conditions else None


def typed_assignments(assignments: list[dict]) -> dict:
    """Katib's string parameter assignments converted to TrainConfig field types."""
    from rnn_classifier.cli import parse_bool

    values = {}
    for assignment in assignments:
        name, text = assignment["name"], str(assignment["value"])
        if name not in field_names():
            raise TuningError(f"optimal trial assigns {name!r}, which is not a config field")
        kind = field_type(name)
        values[name] = parse_bool(text) if kind is bool else kind(float(text)) if kind is int \
            else kind(text)
    return values


def _status_code(error: Exception) -> int | None:
    return getattr(error, "status", None)


def create_or_adopt(manifest: dict, namespace: str, api, log: Callable[[str], None]) -> None:
    """Create the Experiment, or adopt it when it already exists (a retried step).

    A server-side dry run goes first (`dryRun=All`), so the cluster's own
    Katib admission webhook judges the manifest before anything is created.
    An Experiment of the same name can only come from an earlier attempt of
    this very step (the name is derived from the step's inputs), for
    instance one whose create reply was lost: it is adopted, not duplicated.
    """
    from kubernetes.client.exceptions import ApiException

    name = manifest["metadata"]["name"]
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
    for dry_run in ("All", None):
        try:
            api.create_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, namespace,
                                                EXPERIMENTS, body,
                                                **({"dry_run": dry_run} if dry_run else {}))
        except ApiException as error:
            if _status_code(error) == 409:
                log(f"Katib Experiment {namespace}/{name} exists already (an earlier attempt "
                    "of this step): adopting it")
                return
            if dry_run:
                raise TuningError(f"the cluster refused Katib Experiment {namespace}/{name} "
                                  f"in a dry run: {error.status} {error.reason}: "
                                  f"{' '.join(str(error.body or '').split())[:500]}") from error
            raise
    log(f"created Katib Experiment {namespace}/{name}")


def delete_experiment(name: str, namespace: str, api, log: Callable[[str], None]) -> None:
    """Delete the Experiment and its trials (gone already is fine)."""
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, namespace, EXPERIMENTS,
                                            name, propagation_policy="Foreground")
    except ApiException as error:
        if _status_code(error) != 404:
            raise
    log(f"deleted Katib Experiment {namespace}/{name}")


def run_experiment(manifest: dict, namespace: str, api, timeout_s: float = 6 * 3600,
                   poll_s: float | None = None, log: Callable[[str], None] = print,
                   delete_when_done: bool = False) -> dict:
    """Create (or adopt) the Experiment, wait for it, and return the optimal trial.

    With `delete_when_done` the Experiment is deleted once it has ended,
    succeeded, failed or timed out, so no sweep outlives its step.

    Returns:
        {"parameters": typed assignments, "metrics": {name: latest value},
         "trial": the optimal trial's name}.

    Raises:
        TuningError: with Katib's own reason and message when the Experiment
            fails, or the last condition seen when `timeout_s` passes.
    """
    name = manifest["metadata"]["name"]
    create_or_adopt(manifest, namespace, api, log)
    try:
        return _wait(name, namespace, api, timeout_s, poll_s, log)
    finally:
        if delete_when_done:
            delete_experiment(name, namespace, api, log)


def _wait(name: str, namespace: str, api, timeout_s: float, poll_s: float | None,
          log: Callable[[str], None]) -> dict:
    """Poll the Experiment until it succeeds (its optimal trial), fails or times out."""
    deadline = time.monotonic() + timeout_s
    seen = None
    while True:
        experiment = api.get_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, namespace,
                                                      EXPERIMENTS, name)
        condition = latest_condition(experiment) or {}
        status = experiment.get("status") or {}
        summary = (condition.get("type"), status.get("trialsSucceeded"),
                   status.get("trialsRunning"), status.get("trialsFailed"))
        if summary != seen:
            seen = summary
            log(f"experiment {name}: {condition.get('type', 'Pending')} "
                f"(succeeded {status.get('trialsSucceeded', 0)}, running "
                f"{status.get('trialsRunning', 0)}, failed {status.get('trialsFailed', 0)})")
        if condition.get("type") == "Failed":
            raise TuningError(f"Katib Experiment {namespace}/{name} failed: "
                              f"{condition.get('reason', 'unknown reason')}: "
                              f"{condition.get('message', '')}")
        if condition.get("type") == "Succeeded":
            optimal = status.get("currentOptimalTrial") or {}
            assignments = optimal.get("parameterAssignments") or []
            if not assignments:
                raise TuningError(f"Katib Experiment {namespace}/{name} succeeded without an "
                                  f"optimal trial ({condition.get('reason')}: "
                                  f"{condition.get('message', '')})")
            metrics = {metric["name"]: float(metric.get("latest", metric.get("max")))
                       for metric in (optimal.get("observation") or {}).get("metrics") or []}
            return {"parameters": typed_assignments(assignments), "metrics": metrics,
                    "trial": optimal.get("bestTrialName", "")}
        if time.monotonic() > deadline:
            raise TuningError(f"Katib Experiment {namespace}/{name} did not finish within "
                              f"{timeout_s:.0f} s; last condition: "
                              f"{condition.get('type', 'none')} "
                              f"({condition.get('reason', '')}: {condition.get('message', '')})")
        time.sleep(POLL_SECONDS if poll_s is None else poll_s)
