"""`make upload` and `make submit`: the real kfp CLI against a stub KFP API on 127.0.0.1.

No KFP backend can run here, so tests/kfp_stub.py stands in for it: it
answers the REST calls the kfp 2.17 CLI makes and records every request.
"""

import os
import socket
import subprocess
from pathlib import Path

import yaml

from tests.kfp_stub import KfpStub

ROOT = Path(__file__).resolve().parents[1]


def make(target: str, tmp_path: Path, endpoint: str, *settings: str):
    return subprocess.run(
        ["make", "-s", target, f"KFP_ENDPOINT={endpoint}",
         f"PIPELINE={tmp_path / 'build' / 'training_pipeline.yaml'}", *settings],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_upload_creates_the_pipeline_then_adds_versions(tmp_path):
    with KfpStub() as stub:
        first = make("upload", tmp_path, stub.url, "PIPELINE_NAME=rnn-test")
        assert first.returncode == 0, first.stderr
        second = make("upload", tmp_path, stub.url, "PIPELINE_NAME=rnn-test")
        assert second.returncode == 0, second.stderr
    compiled = (tmp_path / "build" / "training_pipeline.yaml").read_text()
    (pipeline,) = stub.pipelines.values()
    assert pipeline["display_name"] == "rnn-test"
    uploads = [request for request in stub.requests if request["method"] == "POST"]
    assert [request["path"] for request in uploads] == [
        "/apis/v2beta1/pipelines/upload", "/apis/v2beta1/pipelines/upload_version"]
    assert uploads[0]["query"]["name"] == ["rnn-test"]
    assert uploads[1]["query"]["pipelineid"] == [pipeline["pipeline_id"]]
    assert uploads[1]["query"]["name"][0].startswith("rnn-test-")
    # Both uploads carry the compiled YAML, platform spec and all.
    assert [version["package"] for version in stub.versions] == [compiled, compiled]


def test_submit_creates_a_run_in_the_experiment_with_typed_parameters(tmp_path):
    with KfpStub() as stub:
        result = make("submit", tmp_path, stub.url, "EXPERIMENT=survey-runs",
                      "DATA_URI=gs://survey-bucket/reference",
                      "SUBMIT_SETTINGS=epochs=7 sweep=true learning_rate=0.001")
        assert result.returncode == 0, result.stderr
    (experiment,) = stub.experiments.values()
    assert experiment["display_name"] == "survey-runs"
    (run,) = stub.runs.values()
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["runtime_config"]["parameters"] == {
        "data_uri": "gs://survey-bucket/reference", "epochs": 7, "sweep": True,
        "learning_rate": 0.001}
    spec, platform = yaml.safe_load_all((tmp_path / "build" / "training_pipeline.yaml").read_text())
    assert run["pipeline_spec"]["pipeline_spec"]["root"] == spec["root"]
    assert run["pipeline_spec"]["platform_spec"] == platform


def test_an_unreachable_endpoint_is_one_clear_line(tmp_path):
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{free.getsockname()[1]}"
    for target in ("upload", "submit"):
        result = make(target, tmp_path, endpoint)
        assert result.returncode != 0
        ours = [line for line in result.stderr.splitlines() if not line.startswith("make")]
        assert len(ours) == 1, result.stderr
        assert ours[0].startswith(f"error: cannot reach the Kubeflow Pipelines API at {endpoint}")
        assert "KFP_ENDPOINT" in ours[0] and "Traceback" not in result.stderr
