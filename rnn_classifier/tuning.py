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


def run_experiment(manifest: dict, namespace: str, api, timeout_s: float = 6 * 3600,
                   poll_s: float | None = None, log: Callable[[str], None] = print) -> dict:
    """Create the Experiment, wait for it, and return the optimal trial.

    Returns:
        {"parameters": typed assignments, "metrics": {name: latest value},
         "trial": the optimal trial's name}.

    Raises:
        TuningError: with Katib's own reason and message when the Experiment
            fails, or the last condition seen when `timeout_s` passes.
    """
    name = manifest["metadata"]["name"]
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
    api.create_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, namespace, EXPERIMENTS,
                                        body)
    log(f"created Katib Experiment {namespace}/{name}")
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
