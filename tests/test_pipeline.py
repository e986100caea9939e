"""The Kubeflow pipeline: compiled IR, components, and the compiled YAML run under kfp.local."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from components import DEFAULT_IMAGE, build_components
from pipelines import compile as compile_module
from rnn_classifier.config import DEFAULTS, field_metadata, field_names, field_type
from rnn_classifier.data import write_dataset
from rnn_classifier.search_space import (
    DEFAULT_ALGORITHM,
    DEFAULT_MAX_TRIALS,
    DEFAULT_PARALLEL_TRIALS,
    SEARCH_SPACE,
)
from rnn_classifier.simulate import CLASS_NAMES, simulate_survey

ROOT = Path(__file__).resolve().parents[1]
IR_TYPES = {bool: "BOOLEAN", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", str: "STRING"}
SWEEP_PARAMETERS = {"sweep": False, "katib_on_cluster": True, "katib_namespace": "",
                    "sweep_algorithm": DEFAULT_ALGORITHM, "sweep_max_trials": DEFAULT_MAX_TRIALS,
                    "sweep_parallel_trials": DEFAULT_PARALLEL_TRIALS, "sweep_timeout_hours": 6.0,
                    "sweep_delete_experiment": True}
QUICK = {"epochs": 3, "rnn_units": 8, "dense_units": 8, "batch_size": 128, "time_column": 0}


def compile_pipeline(tmp_path, *flags) -> dict:
    output = tmp_path / "pipeline" / "training_pipeline.yaml"  # folder does not exist yet
    compile_module.main(["--output", str(output), *flags])
    documents = list(yaml.safe_load_all(output.read_text()))
    return {"spec": documents[0], "platform": documents[1] if len(documents) > 1 else {},
            "path": output}


@pytest.fixture(scope="module")
def survey_dir(tmp_path_factory):
    """A small simulated survey: 3 classes, every class in every split."""
    directory = tmp_path_factory.mktemp("survey")
    write_dataset(directory, simulate_survey(n_vs=240, n_sn=60, n_agn=60, seed=3),
                  list(CLASS_NAMES))
    return directory


def test_ir_has_the_three_components_with_their_artifact_types(tmp_path):
    spec = compile_pipeline(tmp_path)["spec"]
    components = spec["components"]
    expected = {
        "comp-validate-data": {"dataset": "system.Dataset", "metrics": "system.Metrics",
                               "report": "system.Markdown"},
        "comp-tune": {"experiment": "system.Artifact", "metrics": "system.Metrics"},
        "comp-train": {"model": "system.Model", "metrics": "system.Metrics"},
        "comp-evaluate": {"metrics": "system.Metrics",
                          "classification_metrics": "system.ClassificationMetrics",
                          "report": "system.HTML", "summary": "system.Markdown"},
    }
    assert set(expected) <= set(components)
    for name, outputs in expected.items():
        artifacts = components[name]["outputDefinitions"]["artifacts"]
        assert {key: value["artifactType"]["schemaTitle"] for key, value in artifacts.items()
                } == outputs
    for name in ("comp-train", "comp-evaluate"):
        inputs = components[name]["inputDefinitions"]["artifacts"]
        assert inputs["dataset"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert components["comp-evaluate"]["inputDefinitions"]["artifacts"]["model"][
        "artifactType"]["schemaTitle"] == "system.Model"
    dag = spec["root"]["dag"]["tasks"]
    assert dag["validate-data"]["inputs"]["parameters"]["data_fingerprint"][
        "taskOutputParameter"]["producerTask"] == "fingerprint-data"
    assert dag["fingerprint-data"]["cachingOptions"] == {}  # never from the cache
    assert dag["validate-data"]["cachingOptions"] == {"enableCache": True}
    assert dag["tune"]["dependentTasks"] == ["validate-data"]
    assert sorted(dag["train"]["dependentTasks"]) == ["tune", "validate-data"]
    assert sorted(dag["evaluate"]["dependentTasks"]) == ["train", "validate-data"]
    tune_outputs = components["comp-tune"]["outputDefinitions"]["parameters"]
    assert {name: value["parameterType"] for name, value in tune_outputs.items()} == {
        parameter.name: IR_TYPES[field_type(parameter.name)] for parameter in SEARCH_SPACE}
    # The train step takes every searched hyperparameter from the tune step.
    train_inputs = dag["train"]["inputs"]["parameters"]
    for parameter in SEARCH_SPACE:
        assert train_inputs[parameter.name]["taskOutputParameter"] == {
            "producerTask": "tune", "outputParameterKey": parameter.name}
    assert train_inputs["epochs"]["componentInputParameter"] == "epochs"


def test_every_pipeline_parameter_mirrors_the_config_dataclass(tmp_path):
    parameters = compile_pipeline(tmp_path)["spec"]["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {"data_uri", *field_names(), *SWEEP_PARAMETERS}
    assert "defaultValue" not in parameters["data_uri"]
    for name, default in SWEEP_PARAMETERS.items():
        assert parameters[name]["defaultValue"] == default, name
    for name in field_names():
        assert parameters[name]["parameterType"] == IR_TYPES[field_type(name)], name
        assert parameters[name]["defaultValue"] == getattr(DEFAULTS, name), name
    components = compile_pipeline(tmp_path)["spec"]["components"]
    train_inputs = components["comp-train"]["inputDefinitions"]["parameters"]
    assert set(train_inputs) == set(field_names())
    # tune builds a TrainConfig from its arguments: it needs every field too.
    tune_inputs = components["comp-tune"]["inputDefinitions"]["parameters"]
    assert set(field_names()) <= set(tune_inputs)


def test_image_and_hardware_are_compile_options(tmp_path):
    plain = compile_pipeline(tmp_path)
    executors = plain["spec"]["deploymentSpec"]["executors"]
    assert {executor["container"]["image"] for executor in executors.values()} == {DEFAULT_IMAGE}
    # Only train and tune are sized (the defaults of pipelines/task_settings.py), with deadlines.
    assert {name for name, executor in executors.items()
            if "resources" in executor["container"]} == {"exec-train", "exec-tune"}
    assert "accelerator" not in executors["exec-train"]["container"]["resources"]
    assert set(plain["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]) == {
        "exec-train", "exec-tune"}

    gpu = compile_pipeline(tmp_path, "--image", "registry.example/rnn:1.2", "--gpu",
                           "--node-selector", "cloud.google.com/gke-accelerator=nvidia-l4",
                           "--toleration", "nvidia.com/gpu:NoSchedule")
    executors = gpu["spec"]["deploymentSpec"]["executors"]
    assert {executor["container"]["image"] for executor in executors.values()} == {
        "registry.example/rnn:1.2"}
    train = executors["exec-train"]["container"]
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert train["resources"]["accelerator"]["resourceCount"] == "1"
    assert "resources" not in executors["exec-evaluate"]["container"]
    kubernetes = gpu["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert kubernetes["exec-train"]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert kubernetes["exec-train"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_components_install_nothing_at_run_time(tmp_path):
    executors = compile_pipeline(tmp_path)["spec"]["deploymentSpec"]["executors"]
    for executor in executors.values():
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command


def test_make_compile_works_without_tensorflow(tmp_path):
    blocker = tmp_path / "blocker"
    for module in ("tensorflow", "keras"):
        (blocker / module).mkdir(parents=True)
        (blocker / module / "__init__.py").write_text(
            f"raise ImportError('{module} is deliberately unavailable')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    check = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env,
                           capture_output=True, text=True)
    assert "deliberately unavailable" in check.stderr
    output = tmp_path / "out" / "training_pipeline.yaml"
    result = subprocess.run(["make", "compile", f"PIPELINE={output}", "IMAGE=example/rnn:7"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "example/rnn:7" in output.read_text()


def artifact(kind, tmp_path, name):
    return kind(name=name, uri=str(tmp_path / name))


def test_components_python_funcs_on_fixture_data(tmp_path, survey_dir):
    ops = build_components()
    dataset = artifact(Dataset, tmp_path, "dataset")
    validate_metrics = artifact(Metrics, tmp_path, "validate_metrics")
    report = artifact(Markdown, tmp_path, "validate_report")
    ops.validate_data.python_func(data_uri=str(survey_dir), mixed=True, mask_value=-99.0,
                                  dataset=dataset, metrics=validate_metrics, report=report)
    assert validate_metrics.metadata["train_count_SN"] == 36  # 60 x 0.6
    assert validate_metrics.metadata["train_imbalance_ratio"] == pytest.approx(144 / 36)
    assert json.loads(Path(validate_metrics.path).read_text()) == validate_metrics.metadata
    assert "| train |" in Path(report.path).read_text()
    assert (Path(dataset.path) / "classes.txt").read_text().split() == list(CLASS_NAMES)

    settings = DEFAULTS.replace(**QUICK).to_dict()
    passed_through = ops.tune.python_func(
        dataset=dataset, experiment=artifact(Artifact, tmp_path, "experiment"),
        metrics=artifact(Metrics, tmp_path, "tune_metrics"), sweep=False, on_cluster=True,
        namespace="", algorithm="tpe", max_trials=4, parallel_trials=2, timeout_hours=1.0,
        trial_image="unused", trial_gpu=False, **settings)
    assert passed_through == tuple(settings[parameter.name] for parameter in SEARCH_SPACE)

    model = artifact(Model, tmp_path, "model")
    train_metrics = artifact(Metrics, tmp_path, "train_metrics")
    ops.train.python_func(dataset=dataset, model=model, metrics=train_metrics,
                          **DEFAULTS.replace(**QUICK).to_dict())
    assert (Path(model.path) / "model.keras").exists()
    assert 0.0 <= train_metrics.metadata["val_macro_auc"] <= 1.0
    assert train_metrics.metadata["step_seconds"] > 0  # read by benchmarks/performance.py
    assert model.metadata["rnn_units"] == 8

    outputs = {name: artifact(kind, tmp_path, name) for name, kind in (
        ("metrics", Metrics), ("classification_metrics", ClassificationMetrics),
        ("report", HTML), ("summary", Markdown))}
    ops.evaluate.python_func(dataset=dataset, model=model, **outputs)
    assert set(outputs["metrics"].metadata) >= {
        "test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_macro_roc_auc",
        "test_ece", "test_recall_SN", "test_recall_AGN", "test_recall_VS", "step_seconds"}
    matrix = outputs["classification_metrics"].metadata["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == list(CLASS_NAMES)
    assert outputs["classification_metrics"].metadata["roc_class"] in ("SN", "AGN")
    assert Path(outputs["report"].path).read_text().startswith("<!DOCTYPE html>")
    assert "| SN |" in Path(outputs["summary"].path).read_text()


def run_compiled(pipeline_file, root, enable_caching=True, **arguments):
    from pipelines.run_local import run_pipeline

    return run_pipeline(pipeline_file, root, arguments, enable_caching=enable_caching)


def executor_output(run_dir: Path, task: str) -> dict:
    return json.loads((run_dir / task / "executor_output.json").read_text())


def test_compiled_yaml_runs_under_kfp_local_and_is_cached(tmp_path, survey_dir, caplog):
    pipeline_file = compile_pipeline(tmp_path)["path"]
    root = tmp_path / "runs"
    task = run_compiled(pipeline_file, root, data_uri=str(survey_dir), **QUICK)
    run_dir = Path(task.outputs["report"].path).parents[1]
    evaluation = executor_output(run_dir, "evaluate")
    classification = evaluation["artifacts"]["classification_metrics"]["artifacts"][0]["metadata"]
    rows = [row["row"] for row in classification["confusionMatrix"]["rows"]]
    test_labels = np.load(survey_dir / "test_labels.npy").argmax(axis=1)
    np.testing.assert_array_equal(np.sum(rows, axis=1), np.bincount(test_labels, minlength=3))
    roc = classification["confidenceMetrics"]
    assert roc and all(np.isfinite([point["confidenceThreshold"], point["recall"],
                                    point["falsePositiveRate"]]).all() for point in roc)
    metrics = evaluation["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert 0.0 <= metrics["test_macro_roc_auc"] <= 1.0
    assert Path(task.outputs["report"].path).stat().st_size > 10_000

    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = run_compiled(pipeline_file, root, data_uri=str(survey_dir), **QUICK)
    for name in ("validate-data", "tune", "train", "evaluate"):
        assert f"Task {name} cache hit" in caplog.text, name
    assert Path(again.outputs["report"].path).read_bytes() == Path(
        task.outputs["report"].path).read_bytes()

    # The same URI with changed data: the fingerprint differs, so validate_data and
    # everything after it run again (kubeflow/pipelines#4857 would reuse them).
    changed = tmp_path / "changed"
    shutil.copytree(survey_dir, changed)
    context = np.load(changed / "test_contextual_features.npy")
    np.save(changed / "test_contextual_features.npy", context + 0.5)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        first = run_compiled(pipeline_file, root, data_uri=str(changed), **QUICK)
        caplog.clear()
        np.save(changed / "test_contextual_features.npy", context)
        reread = run_compiled(pipeline_file, root, data_uri=str(changed), **QUICK)
    for name in ("validate-data", "tune", "train", "evaluate"):
        assert f"Task {name} cache hit" not in caplog.text, name
    assert Path(reread.outputs["report"].path) != Path(first.outputs["report"].path)

    # With the cache off (run_local --no-cache, what the pipeline benchmark times) every
    # step runs again.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        fresh = run_compiled(pipeline_file, root, enable_caching=False,
                             data_uri=str(survey_dir), **QUICK)
    assert "cache hit" not in caplog.text
    fresh_run_dir = Path(fresh.outputs["report"].path).parents[1]
    assert fresh_run_dir != run_dir
    assert executor_output(fresh_run_dir, "train")["artifacts"]["model"]


def test_corrupt_dataset_stops_at_validate_data(tmp_path, survey_dir, capfd):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for path in survey_dir.iterdir():
        (corrupt / path.name).write_bytes(path.read_bytes())
    labels = np.load(corrupt / "validation_labels.npy")
    labels[0] = [1, 1, 0]
    np.save(corrupt / "validation_labels.npy", labels)
    root = tmp_path / "runs"
    with pytest.raises(RuntimeError):
        run_compiled(compile_pipeline(tmp_path)["path"], root, data_uri=str(corrupt), **QUICK)
    log = capfd.readouterr()
    # Named where the user keeps it, not in the step's staging copy.
    assert f"{corrupt}/validation_labels.npy: row 0 is not one-hot" in log.out + log.err
    run_dirs = [path for path in root.iterdir() if not path.name.startswith(".")]
    assert len(run_dirs) == 1
    assert not (run_dirs[0] / "train").exists()
    assert not (run_dirs[0] / "evaluate").exists()


def test_sweep_runs_locally_and_the_final_model_uses_the_best_trial(tmp_path, survey_dir):
    pipeline_file = compile_pipeline(tmp_path)["path"]
    task = run_compiled(pipeline_file, tmp_path / "runs", data_uri=str(survey_dir), **QUICK,
                        sweep=True, katib_on_cluster=False, sweep_max_trials=2,
                        sweep_parallel_trials=1)
    run_dir = Path(task.outputs["report"].path).parents[1]
    tune = executor_output(run_dir, "tune")
    assert tune["artifacts"]["metrics"]["artifacts"][0]["metadata"]["trials"] == 2
    best = tune["parameterValues"]
    assert set(best) == {parameter.name for parameter in SEARCH_SPACE}
    trained = json.loads((Path(task.outputs["model"].path) / "config.json").read_text())
    for name, value in best.items():
        assert trained[name] == pytest.approx(value), name
    assert trained["epochs"] == QUICK["epochs"]  # fixed settings reach the final train too
    manifest = yaml.safe_load((run_dir / "tune" / "experiment").read_text())
    assert manifest["spec"]["maxTrialCount"] == 2


def undescribed_inputs(spec: dict) -> list[str]:
    """`pipeline.NAME` / `COMPONENT.NAME` of every input without a description in the IR."""
    missing = [f"pipeline.{name}" for name, value
               in spec["root"]["inputDefinitions"]["parameters"].items()
               if not value.get("description", "").strip()]
    for component_name, component in spec["components"].items():
        if "executorLabel" not in component:
            continue  # a dsl.If branch: its inputs are the pipeline's own channels
        for kind in ("parameters", "artifacts"):
            for name, value in component.get("inputDefinitions", {}).get(kind, {}).items():
                if not value.get("description", "").strip():
                    missing.append(f"{component_name}.{name}")
    return missing


def test_every_input_of_every_component_and_pipeline_is_described(tmp_path):
    spec = compile_pipeline(tmp_path)["spec"]
    assert undescribed_inputs(spec) == []
    retraining = list(yaml.safe_load_all(
        (tmp_path / "pipeline" / "retraining_pipeline.yaml").read_text()))[0]
    assert undescribed_inputs(retraining) == []
    # The descriptions are the config's help text, with the default.
    prior_weight = spec["root"]["inputDefinitions"]["parameters"]["prior_weight"]
    assert field_metadata("prior_weight")["help"].split()[0] in prior_weight["description"]
    assert f"Default: {DEFAULTS.prior_weight!r}" in prior_weight["description"]
    train_inputs = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    assert "one of " + ", ".join(field_metadata("loss")["choices"]) in " ".join(
        train_inputs["loss"]["description"].split())


def test_safe_steps_retry_and_train_and_tune_are_sized(tmp_path):
    from pipelines.task_settings import RETRIES

    compiled = compile_pipeline(tmp_path, "--cpu", "2", "--memory", "8G", "--timeout-hours", "3")
    retraining = list(yaml.safe_load_all(
        (tmp_path / "pipeline" / "retraining_pipeline.yaml").read_text()))
    for documents, retried, sized in (
            ([compiled["spec"], compiled["platform"]],
             {"fingerprint-data", "validate-data", "tune", "evaluate"}, {"train", "tune"}),
            (retraining, {"ingest", "validate-data", "check-drift", "evaluate", "compare",
                          "publish-model"}, {"train"})):
        spec, platform = documents[0], documents[1]
        tasks = spec["root"]["dag"]["tasks"]
        executed = {name for name, task in tasks.items() if "componentRef" in task
                    and "executorLabel" in spec["components"][task["componentRef"]["name"]]}
        assert {name for name in executed if "retryPolicy" in tasks[name]} == retried
        for name in retried:
            policy = tasks[name]["retryPolicy"]
            assert policy["maxRetryCount"] == RETRIES and policy["backoffFactor"] > 1
        executors = spec["deploymentSpec"]["executors"]
        deadlines = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for name in sized:
            resources = executors[f"exec-{name}"]["container"]["resources"]
            assert resources["resourceCpuRequest"] == resources["resourceCpuLimit"] == "2"
            assert resources["resourceMemoryRequest"] == resources["resourceMemoryLimit"] == "8G"
            assert deadlines[f"exec-{name}"]["activeDeadlineSeconds"] == str(3 * 3600)
        for name in executed - sized:
            assert "resources" not in executors[tasks[name]["componentRef"]["name"].replace(
                "comp-", "exec-")]["container"]


def test_run_local_shows_a_line_per_step_and_keeps_the_full_log(tmp_path, survey_dir, capsys):
    from pipelines import run_local

    pipeline_file = compile_pipeline(tmp_path)["path"]
    settings = [f"--set={name}={value}" for name, value in QUICK.items()]
    assert run_local.main(["--pipeline", str(pipeline_file), "--data-uri", str(survey_dir),
                           "--pipeline-root", str(tmp_path / "runs"), *settings]) == 0
    shown = capsys.readouterr().out.splitlines()
    for step in ("fingerprint-data", "validate-data", "tune", "train", "evaluate"):
        assert f"  {step}: started" in shown and any(
            line.startswith(f"  {step}: success (") for line in shown), step
    epochs = [line for line in shown if line.startswith("    epoch ")]
    assert len(epochs) == QUICK["epochs"]
    assert len(shown) < 50  # kfp.local's own output is hundreds of lines
    (log_line,) = [line for line in shown if line.startswith("full log: ")]
    log = Path(log_line.removeprefix("full log: "))
    assert log.name == "kfp.log" and log.parent.parent == tmp_path / "runs"
    text = log.read_text()
    assert "confidenceMetrics" in text and len(text.splitlines()) > 10 * len(shown)
