"""The cluster side of the `tune` step, against a stub Kubernetes API on 127.0.0.1.

No Kubernetes or Katib can run here: tests.k8s_stub records the requests and
plays Katib's controller (status conditions Created -> Running -> Succeeded
or Failed).
"""

import pytest
from kfp.dsl import Artifact, Metrics

from rnn_classifier import tuning
from rnn_classifier.config import DEFAULTS
from rnn_classifier.katib import load_manifest, validate_experiment
from rnn_classifier.search_space import SEARCH_SPACE
from rnn_classifier.steps import tune_step
from rnn_classifier.tuning import TuningError, custom_objects_api, run_experiment
from tests.k8s_stub import FAILED, SUCCEEDED, KubernetesStub

MANIFEST = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
            "metadata": {"name": "rnn-sweep-abc"}, "spec": {"maxTrialCount": 4}}


def test_creates_the_experiment_and_returns_typed_best_hyperparameters():
    with KubernetesStub(SUCCEEDED) as stub:
        lines = []
        best = run_experiment(MANIFEST, "team-astro", custom_objects_api(stub.url),
                              poll_s=0.01, log=lines.append)
    # A server-side dry run first (the cluster's Katib webhook judges it), then the create.
    dry_run, create = stub.requests[:2]
    assert dry_run["method"] == create["method"] == "POST"
    assert dry_run["path"].endswith("/experiments?dryRun=All") and dry_run["body"] == create["body"]
    assert create["path"] == "/apis/kubeflow.org/v1beta1/namespaces/team-astro/experiments"
    assert create["body"]["metadata"] == {"name": "rnn-sweep-abc", "namespace": "team-astro"}
    assert create["body"]["spec"] == MANIFEST["spec"]
    assert [request["method"] for request in stub.requests[2:]] == ["GET"] * 3
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


def tune_arguments(**overrides):
    settings = DEFAULTS.replace(epochs=3, time_column=0).to_dict()
    return {**settings, "sweep": True, "on_cluster": True, "namespace": "team-astro",
            "algorithm": "tpe", "max_trials": 4, "parallel_trials": 2, "timeout_hours": 1.0,
            "trial_image": "registry.example/rnn:1", "trial_gpu": True, **overrides}


def test_tune_step_on_the_cluster_runs_a_valid_experiment(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "POLL_SECONDS", 0.01)
    experiment = Artifact(name="experiment", uri=str(tmp_path / "experiment.yaml"))
    metrics = Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    with KubernetesStub(SUCCEEDED) as stub:
        best = tune_step("gs://bucket/runs/7/dataset", str(tmp_path / "unused"),
                         tune_arguments(api_server=stub.url), experiment, metrics)
    created = stub.requests[0]["body"]
    assert stub.requests[0]["path"].endswith("/namespaces/team-astro/experiments?dryRun=All")
    # Named from the step's inputs (a retry derives the same name), not "precision", the
    # last fixed field, which a shadowed loop variable once gave every Experiment.
    assert created["metadata"]["name"] == tuning.experiment_name(
        "gs://bucket/runs/7/dataset", {key: value for key, value in
                                       tune_arguments(api_server=stub.url).items()
                                       if key != "api_server"})
    assert validate_experiment(created) == []
    assert created == load_manifest(experiment.path) | {
        "metadata": {**load_manifest(experiment.path)["metadata"], "namespace": "team-astro"}}
    container = created["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"][0]
    assert container["image"] == "registry.example/rnn:1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    command = container["command"]
    assert "--data-dir=gs://bucket/runs/7/dataset" in command
    assert "--epochs=3" in command and "--time-column=0" in command  # held fixed
    assert "--learning-rate=${trialParameters.learning_rate}" in command
    expected = {**{p.name: getattr(DEFAULTS, p.name) for p in SEARCH_SPACE},
                "learning_rate": 0.0031, "rnn_units": 48, "rnn_type": "lstm", "loss": "wce"}
    assert best == tuple(expected[p.name] for p in SEARCH_SPACE)
    assert metrics.metadata == {"best_val_macro_auc": 0.97}
    # Done: the Experiment and its trials are deleted, so no sweep outlives the step.
    assert stub.requests[-1]["method"] == "DELETE" and not stub.experiments


def test_a_retry_after_a_lost_reply_adopts_the_experiment_instead_of_a_second_sweep():
    with KubernetesStub(SUCCEEDED, lose_create_replies=1) as stub:
        api = custom_objects_api(stub.url)
        with pytest.raises(Exception):  # noqa: B017  the create's reply never came
            run_experiment(MANIFEST, "team-astro", api, poll_s=0.01, log=lambda line: None)
        assert list(stub.experiments) == [("team-astro", "rnn-sweep-abc")]  # it was created
        lines = []
        best = run_experiment(MANIFEST, "team-astro", api, poll_s=0.01, log=lines.append,
                              delete_when_done=True)
    assert best["trial"] == "rnn-sweep-abc-3"
    assert any("adopting it" in line for line in lines)
    stored = [request for request in stub.requests if request["method"] == "POST"
              and "dryRun" not in request["path"]]
    assert len(stored) == 1  # one Experiment created, never a second
    assert not stub.experiments  # and deleted once done


def test_the_experiment_name_is_fixed_by_the_step_inputs():
    arguments = tune_arguments()
    name = tuning.experiment_name("gs://b/runs/7/dataset", arguments)
    assert name == tuning.experiment_name("gs://b/runs/7/dataset", dict(arguments))  # a retry
    assert name != tuning.experiment_name("gs://b/runs/8/dataset", arguments)  # another run
    assert name != tuning.experiment_name("gs://b/runs/7/dataset",
                                          {**arguments, "max_trials": 5})
    assert len(name) <= 63 and name.replace("-", "").isalnum() and name == name.lower()


def test_trials_are_scheduled_and_sized_as_the_train_step(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "POLL_SECONDS", 0.01)
    scheduling = {"node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
                  "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}], "cpu": "4", "memory": "16G"}
    with KubernetesStub(SUCCEEDED) as stub:
        tune_step("gs://bucket/runs/7/dataset", str(tmp_path),
                  tune_arguments(api_server=stub.url, trial_scheduling=scheduling,
                                 delete_experiment=False),
                  Artifact(name="e", uri=str(tmp_path / "e.yaml")),
                  Metrics(name="m", uri=str(tmp_path / "m")))
    created = stub.requests[0]["body"]
    assert validate_experiment(created) == []
    pod = created["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == scheduling["node_selector"]
    assert pod["tolerations"] == scheduling["tolerations"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "4", "memory": "16G"}
    assert resources["limits"] == {"cpu": "4", "memory": "16G", "nvidia.com/gpu": 1}
    # Kept on request (delete_experiment=False): no DELETE was sent.
    assert "DELETE" not in {request["method"] for request in stub.requests}
    assert list(stub.experiments)


def test_tune_step_fails_with_katibs_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "POLL_SECONDS", 0.01)
    with KubernetesStub(FAILED) as stub, pytest.raises(TuningError,
                                                       match="ExperimentMaxFailedTrialsReached"):
        tune_step("gs://bucket/runs/7/dataset", str(tmp_path), tune_arguments(api_server=stub.url),
                  Artifact(name="e", uri=str(tmp_path / "e.yaml")),
                  Metrics(name="m", uri=str(tmp_path / "m")))
