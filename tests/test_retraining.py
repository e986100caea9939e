"""Retraining: drift, ingest, the promotion rule, the compiled pipeline, the schedule, and
the whole pipeline under kfp.local against the gcp-storage-emulator server.

The acceptance runs share one first run (a module fixture that creates the
champion on the emulator); each later scenario works on a copy of that
bucket, so they do not depend on each other's order.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines import compile as compile_module
from pipelines import schedule
from pipelines.credentials import GCS_SECRET_MOUNT_PATH
from pipelines.run_local import run_pipeline
from pipelines.task_settings import DEFAULT_RESOURCES
from rnn_classifier import drift, retrain, storage
from rnn_classifier.config import DEFAULTS, field_names, field_type
from rnn_classifier.data import DataError, load_dataset, write_dataset
from rnn_classifier.retrain_steps import check_drift_step, decision_markdown
from rnn_classifier.simulate import CLASS_NAMES, simulate_survey
from tests.kfp_stub import KfpStub

ROOT = Path(__file__).resolve().parents[1]
IR_TYPES = {bool: "BOOLEAN", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", str: "STRING"}
QUICK = {"epochs": 2, "rnn_units": 8, "dense_units": 8, "rnn_layers": 1, "batch_size": 128,
         "time_column": 0}
MAX_OBS = 20
CLASSES = list(CLASS_NAMES)


def survey(seed: int, n_vs: int = 240, n_sn: int = 60, n_agn: int = 60) -> dict:
    return simulate_survey(n_vs=n_vs, n_sn=n_sn, n_agn=n_agn, seed=seed, max_obs=MAX_OBS)


def small_batch(seed: int) -> dict:
    return survey(seed, n_vs=80, n_sn=20, n_agn=20)


def scale_flux(arrays: dict, factor: float) -> dict:
    """The batch with every real flux (time feature 1) multiplied: a calibration change."""
    for split in arrays.values():
        time = split["time_features"]
        real = ~np.all(time == -99.0, axis=-1)
        time[..., 1][real] *= factor
    return arrays


def pooled(arrays: dict) -> drift.DriftData:
    return drift.DriftData(
        np.concatenate([split["time_features"] for split in arrays.values()]),
        np.concatenate([split["contextual_features"] for split in arrays.values()]),
        np.concatenate([split["labels"] for split in arrays.values()]).argmax(axis=1))


# --------------------------------------------------------------------------
# Drift
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference_arrays():
    return survey(3)


def test_drift_of_identical_data_is_zero(reference_arrays):
    data = pooled(reference_arrays)
    report = drift.drift_report(data, data, CLASSES, time_column=0)
    assert set(report["measures"]) == {"time_feature_1", "time_feature_2",
                                       "contextual_feature_0", "contextual_feature_1",
                                       "contextual_feature_2", "class_balance", "observations",
                                       "cadence"}  # the time column itself is left out
    for name, measure in report["measures"].items():
        assert measure["psi"] == pytest.approx(0.0, abs=1e-12), name
        assert measure.get("ks", 0.0) == pytest.approx(0.0, abs=1e-12), name
    assert report["class_balance"]["tvd"] == pytest.approx(0.0)
    assert drift.exceeded(report, drift.DEFAULT_THRESHOLD) == {}


def test_a_fresh_sample_of_the_same_survey_stays_below_the_threshold(reference_arrays):
    report = drift.drift_report(pooled(reference_arrays), pooled(small_batch(5)), CLASSES,
                                time_column=0)
    assert drift.max_psi(report) < drift.DEFAULT_THRESHOLD, report["measures"]
    json.dumps(report, allow_nan=False)


@pytest.mark.parametrize("change, measure", [
    ("flux", "time_feature_1"), ("balance", "class_balance"), ("cadence", "cadence"),
    ("length", "observations"), ("context", "contextual_feature_0")])
def test_each_kind_of_shift_is_caught_by_its_measure(reference_arrays, change, measure):
    new = small_batch(7)
    if change == "flux":
        scale_flux(new, 4.0)
    elif change == "balance":
        new = survey(7, n_vs=20, n_sn=60, n_agn=40)
    elif change == "cadence":
        for split in new.values():
            time = split["time_features"]
            real = ~np.all(time == -99.0, axis=-1)
            time[..., 0][real] *= 5.0  # observed five times less often
    elif change == "length":
        for split in new.values():
            split["time_features"][:, 3:] = -99.0  # only the first 3 observations
    elif change == "context":
        for split in new.values():
            split["contextual_features"][:, 0] += 50.0
    report = drift.drift_report(pooled(reference_arrays), pooled(new), CLASSES, time_column=0)
    over = drift.exceeded(report, drift.DEFAULT_THRESHOLD)
    assert measure in over, report["measures"]
    assert over[measure] == report["measures"][measure]["psi"]


def test_psi_bins_shrink_for_small_batches_and_constant_features_do_not_drift():
    assert drift.n_bins(10_000) == drift.MAX_BINS
    assert drift.n_bins(60) == 3
    assert drift.n_bins(5) == 2
    assert drift.psi(np.full(500, 3.0), np.full(40, 3.0)) == pytest.approx(0.0)
    assert drift.psi(np.full(500, 3.0), np.full(40, 4.0)) > drift.DEFAULT_THRESHOLD


# --------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------

def write_folder(uri: str, arrays: dict, ids=None, classes=CLASSES) -> None:
    """A contract folder (and ids.npy) at a local path or gs:// URI."""
    import tempfile

    with tempfile.TemporaryDirectory() as staging:
        write_dataset(staging, arrays, classes)
        if ids is not None:
            np.save(Path(staging, "ids.npy"), np.asarray(ids), allow_pickle=False)
        storage.upload_folder(staging, uri)


def n_rows(arrays: dict) -> int:
    return sum(len(split["labels"]) for split in arrays.values())


def test_ingest_merges_in_date_order_and_the_latest_row_of_an_object_wins(tmp_path):
    bucket = str(tmp_path / "bucket")
    reference = survey(3, n_vs=60, n_sn=15, n_agn=15)
    total = n_rows(reference)
    write_folder(f"{bucket}/survey/reference", reference, ids=np.arange(total))
    # The batch repeats reference objects 0..4 (its first five train rows), with
    # new measurements; its remaining rows are new objects.
    batch = survey(4, n_vs=20, n_sn=5, n_agn=5)
    batch_ids = np.arange(1000, 1000 + n_rows(batch))
    batch_ids[:5] = np.arange(5)
    write_folder(f"{bucket}/survey/batches/2026-11-01", batch, ids=batch_ids)
    # A later batch without ids and with shorter sequences (padded on merge).
    later = simulate_survey(n_vs=20, n_sn=5, n_agn=5, seed=6, max_obs=12)
    write_folder(f"{bucket}/survey/batches/2026-11-02-north", later)

    record = retrain.ingest(bucket, tmp_path / "merged")
    assert record["batches"] == ["2026-11-01", "2026-11-02-north"]
    assert record["new_batches"] == record["batches"]  # no champion yet
    assert record["latest_batch"] == "2026-11-02-north"
    assert record["duplicates_removed"] == 5
    merged = load_dataset(tmp_path / "merged")
    assert sum(len(merged[split]) for split in merged.splits) == (
        total + n_rows(batch) + n_rows(later) - 5)
    assert merged["train"].time_features.shape[1] == MAX_OBS
    # Where the reference's objects 0..4 sat, their rows are gone; the batch's
    # rows for them are in the merged train split, in the batch's block.
    reference_ids_by_split = np.split(np.arange(total), np.cumsum(
        [len(reference[split]["labels"]) for split in ("train", "validation")]))
    sources = {source["name"]: source for source in record["sources"]}
    kept_reference_train = sources["reference"]["rows"]["train"]
    dropped_in_train = np.isin(reference_ids_by_split[0], np.arange(5)).sum()
    assert kept_reference_train[1] - kept_reference_train[0] == (
        len(reference["train"]["labels"]) - dropped_in_train)
    start = sources["2026-11-01"]["rows"]["train"][0]
    np.testing.assert_array_equal(merged["train"].time_features[start:start + 5],
                                  batch["train"]["time_features"][:5])
    assert json.loads((tmp_path / "merged" / retrain.SOURCES_FILE).read_text())[
        "duplicates_removed"] == 5

    # With a champion trained on the first batch, only the later one is new.
    storage.write_json(f"{bucket}/{retrain.CHAMPION}",
                       {"model_uri": "x", "data": {"batches": ["2026-11-01"],
                                                   "latest_batch": "2026-11-01"}})
    again = retrain.ingest(bucket, tmp_path / "merged-again")
    assert again["new_batches"] == ["2026-11-02-north"]
    assert again["batches"] == record["batches"]


def test_ingest_names_the_batch_that_does_not_fit(tmp_path):
    bucket = str(tmp_path / "bucket")
    write_folder(f"{bucket}/survey/reference", survey(3, n_vs=30, n_sn=9, n_agn=9))
    with pytest.raises(DataError, match=r"no reference set here"):
        retrain.ingest(str(tmp_path / "empty"), tmp_path / "out")

    narrow = survey(4, n_vs=30, n_sn=9, n_agn=9)
    for split in narrow.values():
        split["time_features"] = split["time_features"][..., :2]
    write_folder(f"{bucket}/survey/batches/2026-11-01", narrow)
    with pytest.raises(DataError, match=r"batches/2026-11-01/train_time_features\.npy: has "
                                        r"width 2, the reference's has 3"):
        retrain.ingest(bucket, tmp_path / "out")

    write_folder(f"{bucket}/survey/batches/2026-11-01", survey(4, n_vs=30, n_sn=9, n_agn=9),
                 classes=["SN", "VS", "AGN"])
    with pytest.raises(DataError, match=r"2026-11-01/classes\.txt: names the classes"):
        retrain.ingest(bucket, tmp_path / "out")

    Path(bucket, "survey/batches/2026-11-01/classes.txt").write_text("\n".join(CLASSES))
    Path(bucket, "survey/batches/2026-11-01/ids.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match=r"2026-11-01/ids\.npy: not a readable \.npy array"):
        retrain.ingest(bucket, tmp_path / "out")

    Path(bucket, "survey/batches/2026-11-01/ids.npy").unlink()
    Path(bucket, "survey/batches/november").mkdir()
    Path(bucket, "survey/batches/november/x").write_text("")
    with pytest.raises(DataError, match=r"batches/november/: a batch folder must be named by "
                                        r"date"):
        retrain.ingest(bucket, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing is written when input is bad


# --------------------------------------------------------------------------
# The promotion rule and the pointer
# --------------------------------------------------------------------------

def figures(auc: float, recall: dict, ece: float = 0.05) -> dict:
    return {"accuracy": 0.9, "balanced_accuracy": 0.8, "macro_f1": 0.7, "macro_roc_auc": auc,
            "ece": ece, "recall": recall, "support": dict.fromkeys(recall, 10)}


RECALL = {"VS": 0.95, "SN": 0.80, "AGN": 0.70}


def test_no_champion_promotes():
    decision = retrain.decide(figures(0.6, RECALL), None, "macro_roc_auc", 0.01, 0.05,
                              ["SN", "AGN"])
    assert decision.promote and decision.reason.startswith("no champion yet")


def test_an_improvement_of_at_least_min_delta_promotes():
    decision = retrain.decide(figures(0.93, {**RECALL, "SN": 0.78}), figures(0.92, RECALL),
                              "macro_roc_auc", 0.01, 0.05, ["SN", "AGN"])
    assert decision.promote, decision.reason
    assert decision.improvement == pytest.approx(0.01)
    assert decision.recall_drops["SN"] == pytest.approx(0.02)
    assert "0.9200 -> 0.9300" in decision.reason


def test_an_improvement_below_min_delta_is_refused():
    decision = retrain.decide(figures(0.925, RECALL), figures(0.92, RECALL), "macro_roc_auc",
                              0.01, 0.05, ["SN", "AGN"])
    assert not decision.promote
    assert "improves by +0.0050, less than min_delta 0.01" in decision.reason


def test_a_rare_class_recall_drop_beyond_tolerance_refuses_even_a_better_model():
    challenger = figures(0.99, {"VS": 0.99, "SN": 0.70, "AGN": 0.70})
    decision = retrain.decide(challenger, figures(0.92, RECALL), "macro_roc_auc", 0.01, 0.05,
                              ["SN", "AGN"])
    assert not decision.promote
    assert decision.reason == ("refused: recall of SN drops 0.8000 -> 0.7000 (-0.1000), more "
                               "than recall_tolerance 0.05")
    # The majority class is not protected by the tolerance.
    decision = retrain.decide(figures(0.99, {**RECALL, "VS": 0.5}), figures(0.92, RECALL),
                              "macro_roc_auc", 0.01, 0.05, ["SN", "AGN"])
    assert decision.promote


def test_lower_is_better_for_ece_and_unknown_metrics_are_refused():
    decision = retrain.decide(figures(0.9, RECALL, ece=0.02), figures(0.9, RECALL, ece=0.05),
                              "ece", 0.01, 0.05, ["SN"])
    assert decision.promote and "(lower is better)" in decision.reason
    with pytest.raises(ValueError, match="not one of"):
        retrain.decide(figures(0.9, RECALL), None, "auc", 0.01, 0.05, [])


def test_rare_classes_are_all_but_the_most_frequent():
    assert retrain.rare_classes(np.array([0, 0, 0, 1, 2, 2]), CLASSES) == ["SN", "AGN"]
    assert retrain.rare_classes(np.array([1, 1, 0]), ["a", "b"]) == ["a"]


def test_decision_markdown_shows_the_decision_and_its_figures():
    decision = retrain.decide(figures(0.99, {"VS": 0.99, "SN": 0.70, "AGN": 0.70}),
                              figures(0.92, RECALL), "macro_roc_auc", 0.01, 0.05, ["SN", "AGN"])
    text = decision_markdown({**decision.to_dict(), "champion_run": "20261101T060000Z-abc"})
    assert text.startswith("# Challenger against champion: KEEP THE CHAMPION")
    assert "| **macro_roc_auc** | 0.9200 | 0.9900 | +0.0700 | must improve by >= 0.01 |" in text
    assert "| recall SN (support 10) | 0.8000 | 0.7000 | -0.1000 | may drop by <= 0.05 |" in text


def test_the_pointer_is_replaced_only_at_the_generation_read(tmp_path):
    bucket = str(tmp_path)
    pointer, generation = retrain.read_champion(bucket)
    assert (pointer, generation) == (None, 0)
    retrain.write_champion(bucket, {"run": "a"}, generation)
    with pytest.raises(storage.StorageConflict, match="changed since this run compared"):
        retrain.write_champion(bucket, {"run": "b"}, generation)  # a concurrent promotion
    assert retrain.read_champion(bucket)[0] == {"run": "a"}


# --------------------------------------------------------------------------
# The compiled pipeline
# --------------------------------------------------------------------------

def compile_both(tmp_path, *flags) -> dict:
    output = tmp_path / "out" / "training_pipeline.yaml"
    compile_module.main(["--output", str(output), *flags])
    path = output.with_name("retraining_pipeline.yaml")
    documents = list(yaml.safe_load_all(path.read_text()))
    return {"spec": documents[0], "platform": documents[1] if len(documents) > 1 else {},
            "path": path, "training": next(yaml.safe_load_all(output.read_text()))}


def test_retraining_ir_components_condition_and_parameters(tmp_path):
    compiled = compile_both(tmp_path)
    spec = compiled["spec"]
    # No secret (Workload Identity): the platform spec holds only the train step's deadline.
    assert compiled["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] == {
        "exec-train": {"activeDeadlineSeconds": str(int(DEFAULT_RESOURCES.timeout_hours * 3600))}}
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest", "validate-data", "check-drift", "train", "evaluate",
                          "compare", "publish-model", "condition-branches-1"}
    assert tasks["validate-data"]["inputs"]["parameters"]["data_uri"]["taskOutputParameter"] == {
        "producerTask": "ingest", "outputParameterKey": "data_uri"}
    assert sorted(tasks["train"]["dependentTasks"]) == ["check-drift", "validate-data"]
    assert "evaluate" in tasks["compare"]["dependentTasks"]
    for name in ("ingest", "compare", "publish-model"):
        assert tasks[name]["cachingOptions"] == {}, name  # caching off: reads the bucket
    branches = spec["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    condition = "inputs.parameter_values['pipelinechannel--compare-promote'] == true"
    assert branches["condition-2"]["triggerPolicy"]["condition"] == condition
    assert branches["condition-3"]["triggerPolicy"]["condition"] == f"!({condition})"
    assert set(spec["components"]["comp-condition-2"]["dag"]["tasks"]) == {"promote"}
    assert set(spec["components"]["comp-condition-3"]["dag"]["tasks"]) == {"record-decision"}
    outputs = spec["components"]["comp-compare"]["outputDefinitions"]
    assert {name: value["parameterType"] for name, value in outputs["parameters"].items()} == {
        "promote": "BOOLEAN", "reason": "STRING", "champion_generation": "STRING",
        "decision": "STRUCT"}
    assert {name: value["artifactType"]["schemaTitle"]
            for name, value in outputs["artifacts"].items()} == {
        "metrics": "system.Metrics", "report": "system.Markdown"}

    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert "defaultValue" not in parameters["bucket_uri"]
    assert {name: parameters[name]["defaultValue"] for name in
            ("drift_threshold", "promotion_metric", "min_delta", "recall_tolerance")} == {
        "drift_threshold": drift.DEFAULT_THRESHOLD, "promotion_metric": "macro_roc_auc",
        "min_delta": retrain.DEFAULT_MIN_DELTA,
        "recall_tolerance": retrain.DEFAULT_RECALL_TOLERANCE}
    for name in field_names():
        assert parameters[name]["parameterType"] == IR_TYPES[field_type(name)], name
        assert parameters[name]["defaultValue"] == getattr(DEFAULTS, name), name

    # The two pipelines share the validate_data, train and evaluate components.
    training = compiled["training"]
    for name in ("validate-data", "train", "evaluate"):
        assert spec["components"][f"comp-{name}"] == training["components"][f"comp-{name}"]
        assert (spec["deploymentSpec"]["executors"][f"exec-{name}"]
                == training["deploymentSpec"]["executors"][f"exec-{name}"]), name


def test_gcs_secret_is_mounted_by_name_and_no_credential_is_compiled(tmp_path):
    compiled = compile_both(tmp_path, "--gcs-secret", "rnn-gcs-key")
    executors = compiled["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    bucket_tasks = {"exec-ingest", "exec-validate-data", "exec-compare", "exec-publish-model",
                    "exec-promote", "exec-record-decision"}
    assert {name for name, executor in executors.items()
            if "secretAsVolume" in executor} == bucket_tasks
    for name in bucket_tasks:
        (volume,) = executors[name]["secretAsVolume"]
        assert volume["secretName"] == "rnn-gcs-key"
        assert volume["mountPath"] == GCS_SECRET_MOUNT_PATH
    containers = compiled["spec"]["deploymentSpec"]["executors"]
    for name, executor in containers.items():
        env = {item["name"]: item["value"] for item in executor["container"].get("env", [])}
        if name in bucket_tasks:
            assert env == {"GOOGLE_APPLICATION_CREDENTIALS": f"{GCS_SECRET_MOUNT_PATH}/key.json"}
        else:
            assert env == {}, name
    training = yaml.safe_load_all((tmp_path / "out" / "training_pipeline.yaml").read_text())
    training_platform = list(training)[1]["platforms"]["kubernetes"]["deploymentSpec"]
    assert {name for name, executor in training_platform["executors"].items()
            if "secretAsVolume" in executor} == {"exec-fingerprint-data", "exec-validate-data"}
    for path in (compiled["path"], tmp_path / "out" / "training_pipeline.yaml"):
        text = path.read_text()
        for marker in ("PRIVATE KEY", "private_key", "client_email", "ya29.", "access_token",
                       "refresh_token", '"type": "service_account"'):
            assert marker not in text, (path.name, marker)


# --------------------------------------------------------------------------
# The schedule, against a stub KFP API server
# --------------------------------------------------------------------------

@pytest.fixture
def retraining_yaml(tmp_path) -> Path:
    return compile_both(tmp_path)["path"]


def test_schedule_creates_an_enabled_cron_run_with_typed_parameters_and_unschedule_deletes_it(
        retraining_yaml, capsys):
    with KfpStub() as stub:
        arguments = ["--endpoint", stub.url, "--experiment", "rnn-classifier"]
        assert schedule.main(["create", *arguments, "--cron", "0 0 6 * * *", "--pipeline",
                              str(retraining_yaml), "--set", "bucket_uri=gs://survey-bucket",
                              "--set", "drift_threshold=0.3"]) == 0
        (run,) = stub.recurring_runs.values()
        assert run["display_name"] == schedule.DEFAULT_NAME
        assert run["mode"] == "ENABLE"
        assert run["trigger"] == {"cron_schedule": {"cron": "0 0 6 * * *"}}
        assert run["runtime_config"]["parameters"] == {"bucket_uri": "gs://survey-bucket",
                                                       "drift_threshold": 0.3}
        assert int(run["max_concurrency"]) == 1 and run["no_catchup"] is True
        # With a platform spec (the train step's deadline) kfp sends both documents.
        compiled_spec, compiled_platform = yaml.safe_load_all(retraining_yaml.read_text())
        sent = run["pipeline_spec"]
        assert sent["pipeline_spec"]["pipelineInfo"]["name"] == "rnn-classifier-retraining"
        assert sent["pipeline_spec"]["root"] == compiled_spec["root"]
        assert sent["platform_spec"] == compiled_platform
        (experiment,) = stub.experiments.values()
        assert run["experiment_id"] == experiment["experiment_id"]
        paths = {(request["method"], request["path"]) for request in stub.requests}
        assert ("POST", "/apis/v2beta1/recurringruns") in paths

        # Scheduling again replaces the schedule instead of adding a second one.
        schedule.main(["create", *arguments, "--cron", "0 30 5 * * 1-5", "--pipeline",
                       str(retraining_yaml), "--set", "bucket_uri=gs://survey-bucket"])
        (run,) = stub.recurring_runs.values()
        assert run["trigger"]["cron_schedule"]["cron"] == "0 30 5 * * 1-5"

        assert schedule.main(["delete", *arguments]) == 0
        assert stub.recurring_runs == {}
        assert stub.requests[-1]["method"] == "DELETE"
        assert schedule.main(["delete", *arguments]) == 0  # nothing left: still fine
    assert "no recurring run named rnn-classifier-retraining" in capsys.readouterr().out


def test_schedule_refuses_a_five_field_cron_and_a_missing_bucket(retraining_yaml):
    with pytest.raises(SystemExit):
        schedule.main(["create", "--endpoint", "http://127.0.0.1:9", "--cron", "0 6 * * *",
                       "--pipeline", str(retraining_yaml), "--set", "bucket_uri=gs://b"])
    with pytest.raises(SystemExit, match=r"required pipeline parameter\(s\) \['bucket_uri'\]"):
        schedule.main(["create", "--endpoint", "http://127.0.0.1:9", "--cron", "0 0 6 * * *",
                       "--pipeline", str(retraining_yaml)])


def test_make_schedule_and_unschedule(tmp_path):
    with KfpStub() as stub:
        common = [f"KFP_ENDPOINT={stub.url}", "EXPERIMENT=rnn-classifier"]
        result = subprocess.run(
            ["make", "schedule", *common, "CRON=0 0 6 * * *", "BUCKET_URI=gs://survey-bucket",
             f"PIPELINE={tmp_path / 'training_pipeline.yaml'}"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        (run,) = stub.recurring_runs.values()
        assert run["mode"] == "ENABLE"
        assert run["trigger"] == {"cron_schedule": {"cron": "0 0 6 * * *"}}
        assert run["runtime_config"]["parameters"] == {"bucket_uri": "gs://survey-bucket"}
        sent = run["pipeline_spec"]["pipeline_spec"]  # beside the platform spec
        assert sent["pipelineInfo"]["name"] == "rnn-classifier-retraining"
        result = subprocess.run(["make", "unschedule", *common], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert stub.recurring_runs == {}


# --------------------------------------------------------------------------
# Acceptance: the compiled pipeline under kfp.local, reading and writing the emulator
# --------------------------------------------------------------------------

def run_retraining(pipeline_file: Path, root: Path, bucket: str, **settings):
    return run_pipeline(pipeline_file, root, {"bucket_uri": bucket, **QUICK, **settings})


def snapshot(bucket: str, prefix: str = "models/") -> dict[str, bytes]:
    """Every object under `prefix` and its bytes."""
    return {name: storage.read_bytes(f"{bucket}/{name}")
            for name in storage.list_files(bucket) if name.startswith(prefix)}


def clone(source: str, destination: str) -> str:
    for name in storage.list_files(source):
        storage.write_bytes(f"{destination}/{name}", storage.read_bytes(f"{source}/{name}"))
    return destination


def latest_run_dir(root: Path) -> Path:
    return max((path for path in root.iterdir() if not path.name.startswith(".")),
               key=lambda path: path.stat().st_mtime)


def check_decision_follows_the_rule(decision: dict, settings: dict) -> None:
    """The recorded decision is what the rule gives on the recorded figures."""
    expected = retrain.decide(decision["challenger"], decision.get("champion"),
                              decision["metric"], settings["min_delta"],
                              settings["recall_tolerance"], decision["rare_classes"])
    assert decision["promote"] == expected.promote
    assert decision["reason"] == expected.reason


@pytest.fixture(scope="module")
def first_run(gcs_emulator, tmp_path_factory, reference_arrays):
    """A bucket with the reference set, after a first run: it holds the champion."""
    with pytest.MonkeyPatch.context() as patch:
        gcs_emulator.ensure_running()
        patch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.host)
        bucket = f"gs://{gcs_emulator.create_bucket()}"
        write_folder(f"{bucket}/survey/reference", reference_arrays)
        base = tmp_path_factory.mktemp("retraining")
        output = base / "build" / "training_pipeline.yaml"
        compile_module.main(["--output", str(output)])
        pipeline_file = output.with_name("retraining_pipeline.yaml")
        task = run_retraining(pipeline_file, base / "runs", bucket)
        yield {"bucket": bucket, "pipeline": pipeline_file, "task": task,
               "runs": base / "runs"}


def test_first_run_creates_the_champion(first_run, gcs_bucket):
    bucket = first_run["bucket"]
    champion, generation = retrain.read_champion(bucket)
    assert generation > 0
    assert champion["reason"] == "no champion yet: the first model becomes the champion"
    assert champion["model_uri"] == f"{bucket}/models/{champion['run']}/model"
    assert champion["replaced"] is None
    assert champion["data"]["batches"] == [] and champion["data"]["latest_batch"] == ""
    assert champion["data"]["reference"] == f"{bucket}/survey/reference"
    assert champion["last_decision"]["promoted"] is True
    assert 0.0 <= champion["metrics"]["macro_roc_auc"] <= 1.0
    files = storage.list_files(f"{bucket}/models/{champion['run']}")
    assert {"model/model.keras", "model/config.json", "model/scaler.json", "metrics.json",
            "decision.json"} <= set(files)
    published = storage.read_json(f"{bucket}/models/{champion['run']}/metrics.json")[0]
    assert published == champion["metrics"] | {"support": published["support"]}
    # The challenger's figures in compare are the evaluate step's test figures.
    test_metrics = json.loads(Path(first_run["task"].outputs["test_metrics"].path).read_text())
    assert champion["metrics"]["macro_roc_auc"] == pytest.approx(
        test_metrics["test_macro_roc_auc"])
    assert "no champion yet" in Path(first_run["task"].outputs["decision"].path).read_text()


def test_new_good_batches_train_challengers_promoted_or_refused_by_the_rule(
        first_run, gcs_bucket, tmp_path):
    bucket = clone(first_run["bucket"], gcs_bucket)
    first, first_generation = retrain.read_champion(bucket)

    # A good batch, and a rule every challenger passes: promoted.
    write_folder(f"{bucket}/survey/batches/2026-11-01", small_batch(5))
    promote_rule = {"min_delta": -1.0, "recall_tolerance": 1.0}
    task = run_retraining(first_run["pipeline"], tmp_path / "runs", bucket, **promote_rule)
    second, second_generation = retrain.read_champion(bucket)
    assert second_generation != first_generation
    assert second["run"] != first["run"]
    assert second["reason"].startswith("promoted: macro_roc_auc")
    assert second["replaced"]["run"] == first["run"]
    assert second["data"]["batches"] == ["2026-11-01"]
    assert second["data"]["new_batches"] == ["2026-11-01"]
    decision = storage.read_json(f"{bucket}/models/{second['run']}/decision.json")[0]
    check_decision_follows_the_rule(decision["decision"], promote_rule)
    assert "PROMOTE" in Path(task.outputs["decision"].path).read_text()

    # Another good batch, and a rule no challenger passes: refused, and the
    # pointer says why while still pointing at the same model.
    write_folder(f"{bucket}/survey/batches/2026-11-05", small_batch(6))
    refuse_rule = {"min_delta": 1.0, "recall_tolerance": 0.05}
    run_retraining(first_run["pipeline"], tmp_path / "runs", bucket, **refuse_rule)
    third, _ = retrain.read_champion(bucket)
    for key in ("model_uri", "run", "metrics", "data", "reason", "promoted_at"):
        assert third[key] == second[key], key
    last = third["last_decision"]
    assert last["promoted"] is False
    assert "less than min_delta 1" in last["reason"]
    assert last["champion_run"] == second["run"]
    refused = storage.read_json(f"{bucket}/models/{last['run']}/decision.json")[0]
    assert refused["data"]["new_batches"] == ["2026-11-05"]
    check_decision_follows_the_rule(refused["decision"], refuse_rule)
    runs = {name.split("/")[0] for name in storage.list_files(f"{bucket}/models")
            if "/" in name}
    assert runs == {first["run"], second["run"], last["run"]}  # every challenger published


def test_a_drifted_batch_stops_the_run_at_the_drift_check(first_run, gcs_bucket, tmp_path,
                                                          capfd):
    bucket = clone(first_run["bucket"], gcs_bucket)
    write_folder(f"{bucket}/survey/batches/2026-11-02", scale_flux(small_batch(8), 4.0))
    before = snapshot(bucket)
    with pytest.raises(RuntimeError, match="check-drift"):
        run_retraining(first_run["pipeline"], tmp_path / "runs", bucket)
    log = capfd.readouterr()
    assert "data drift above the threshold 0.25: batch 2026-11-02: time_feature_1 PSI" in (
        log.out + log.err)
    assert snapshot(bucket) == before
    run_dir = latest_run_dir(tmp_path / "runs")
    assert (run_dir / "check-drift" / "report").read_text().count("**DRIFT**") >= 2
    assert not (run_dir / "train").exists()


def test_a_corrupt_batch_stops_the_run_and_leaves_models_unchanged(first_run, gcs_bucket,
                                                                   tmp_path, capfd):
    bucket = clone(first_run["bucket"], gcs_bucket)
    before = snapshot(bucket)
    assert f"models/{retrain.read_champion(bucket)[0]['run']}/model/model.keras" in before

    # Labels that are not one-hot: the merged dataset fails the contract.
    corrupt = small_batch(9)
    corrupt["validation"]["labels"][3] = [1, 1, 0]
    write_folder(f"{bucket}/survey/batches/2026-11-03", corrupt)
    with pytest.raises(RuntimeError, match="validate-data"):
        run_retraining(first_run["pipeline"], tmp_path / "runs", bucket)
    log = capfd.readouterr()
    assert "validation_labels.npy: row" in log.out + log.err
    assert "is not one-hot" in log.out + log.err
    run_dir = latest_run_dir(tmp_path / "runs")
    assert not (run_dir / "check-drift").exists() and not (run_dir / "train").exists()
    assert snapshot(bucket) == before

    # A truncated file cannot even be merged: ingest names the batch's file.
    data = storage.read_bytes(f"{bucket}/survey/batches/2026-11-03/train_labels.npy")
    storage.write_bytes(f"{bucket}/survey/batches/2026-11-03/train_labels.npy", data[:-8])
    with pytest.raises(RuntimeError, match="ingest"):
        run_retraining(first_run["pipeline"], tmp_path / "runs", bucket)
    log = capfd.readouterr()
    assert f"{bucket}/survey/batches/2026-11-03/train_labels.npy: file is truncated" in (
        log.out + log.err)
    assert snapshot(bucket) == before


def test_check_drift_step_reports_each_new_batch(tmp_path, reference_arrays):
    """The step alone: Metrics and Markdown name the drifted batch, the good one passes."""
    bucket = str(tmp_path / "bucket")
    write_folder(f"{bucket}/survey/reference", reference_arrays)
    write_folder(f"{bucket}/survey/batches/2026-11-01", small_batch(5))
    write_folder(f"{bucket}/survey/batches/2026-11-02", scale_flux(small_batch(8), 4.0))
    retrain.ingest(bucket, tmp_path / "merged")

    class Artifact:
        def __init__(self, path):
            self.path, self.metadata = str(path), {}

        def log_metric(self, name, value):
            self.metadata[name] = value

    metrics, report = Artifact(tmp_path / "metrics"), Artifact(tmp_path / "report.md")
    with pytest.raises(Exception, match="batch 2026-11-02: time_feature_1") as caught:
        check_drift_step(str(tmp_path / "merged"), True, -99.0, 0, 0.25, metrics, report)
    assert type(caught.value).__name__ == "DriftError"
    assert "2026-11-01" not in str(caught.value)
    assert metrics.metadata["drifted_batches"] == 1
    assert metrics.metadata["new_batches"] == 2
    assert metrics.metadata["psi_time_feature_1"] > 0.25
    assert json.loads(Path(metrics.path).read_text()) == metrics.metadata
    text = Path(report.path).read_text()
    assert "| measure | reference median | `2026-11-01` | `2026-11-02` |" in text
