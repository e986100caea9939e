"""The cluster side of the `tune` step, against a stub Kubernetes API on 127.0.0.1.

No Kubernetes or Katib can run here: tests.k8s_stub records the requests and
plays Katib's controller (status conditions Created -> Running -> Succeeded
or Failed).
"""

import pytest

from rnn_classifier.tuning import TuningError, custom_objects_api, run_experiment
from tests.k8s_stub import FAILED, SUCCEEDED, KubernetesStub

MANIFEST = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
            "metadata": {"name": "rnn-sweep-abc"}, "spec": {"maxTrialCount": 4}}


def test_creates_the_experiment_and_returns_typed_best_hyperparameters():
    with KubernetesStub(SUCCEEDED) as stub:
        lines = []
        best = run_experiment(MANIFEST, "team-astro", custom_objects_api(stub.url),
                              poll_s=0.01, log=lines.append)
    create = stub.requests[0]
    assert create["method"] == "POST"
    assert create["path"] == "/apis/kubeflow.org/v1beta1/namespaces/team-astro/experiments"
    assert create["body"]["metadata"] == {"name": "rnn-sweep-abc", "namespace": "team-astro"}
    assert create["body"]["spec"] == MANIFEST["spec"]
    assert [request["method"] for request in stub.requests[1:]] == ["GET"] * 3
    assert best["parameters"] == {"learning_rate": 0.0031, "rnn_units": 48, "rnn_type": "lstm",
                                  "loss": "wce"}
    assert isinstance(best["parameters"]["rnn_units"], int)
    assert best["metrics"] == {"val_macro_auc": 0.97}
    assert best["trial"] == "rnn-sweep-abc-3"
    assert any("Running" in line for line in lines) and any("Succeeded" in line for line in lines)


def test_failure_carries_katibs_reason():
    with KubernetesStub(FAILED) as stub, pytest.raises(
            TuningError, match="ExperimentMaxFailedTrialsReached: Experiment has reached the "
                               "maximum number of failed trials"):
        run_experiment(MANIFEST, "team-astro", custom_objects_api(stub.url), poll_s=0.01,
                       log=lambda line: None)


def test_timeout_reports_the_last_condition():
    running_forever = SUCCEEDED[:2]
    with KubernetesStub(running_forever) as stub, pytest.raises(
            TuningError, match="did not finish within 0 s; last condition: Running"):
        run_experiment(MANIFEST, "team-astro", custom_objects_api(stub.url), timeout_s=0.05,
                       poll_s=0.01, log=lambda line: None)
