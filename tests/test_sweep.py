"""The local Katib sweep: manifest parsing, samplers, median stopping, real trials.

Most tests run a fake trainer (a few lines of Python in tmp_path that print
Katib-style `name=value` lines) so that stopping and failure are fast and
deterministic; one test runs three real `rnn-classifier train` trials on the
sample data.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from rnn_classifier import cli
from rnn_classifier.sweep import (
    EARLY_STOPPED,
    FAILED,
    KATIB_METRICS_REGEX,
    SUCCEEDED,
    MedianStop,
    MedianStopSettings,
    StopRule,
    SweepError,
    extract_metrics,
    load_experiment,
    make_sampler,
    parse_experiment,
    parse_metrics,
    run_sweep,
    trial_command,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "tests" / "fixtures" / "sample_data"
PROJECT_MANIFEST = REPO / "manifests" / "katib" / "experiment.yaml"
KATIB_EXAMPLES = REPO.parent / "shared" / "katib" / "examples"

FAKE_TRAINER = '''\
import sys, time
from pathlib import Path

args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
number = Path(args["output-dir"]).parent.name
if args.get("fail") == "true":
    print("fake trainer: bad hyperparameters", file=sys.stderr)
    sys.exit(1)
low = number in args.get("low", "").split(",")
for epoch in range(1, int(args["epochs"]) + 1):
    value = 0.1 if low else 0.8 + 0.01 * epoch + float(args["x"]) / 100
    print(f"epoch={epoch} loss=0.5 val_macro_auc={value:.4f} val_macro_f1=nan "
          f"val_loss={1 - value:.4f}", flush=True)
    time.sleep(float(args.get("delay", "0")))
'''


def experiment_document(command: list[str], algorithm: str = "random", **spec) -> dict:
    """A Katib Experiment (upstream examples' shape) with parameters x, units and cell."""
    document = {
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
        "metadata": {"name": "test-sweep", "namespace": "kubeflow"},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "val_macro_auc",
                          "additionalMetricNames": ["val_macro_f1", "val_loss"]},
            "algorithm": {"algorithmName": algorithm},
            "parallelTrialCount": 2, "maxTrialCount": 3, "maxFailedTrialCount": 3,
            "parameters": [
                {"name": "x", "parameterType": "double",
                 "feasibleSpace": {"min": "0.001", "max": "0.01", "distribution": "logUniform"}},
                {"name": "units", "parameterType": "int",
                 "feasibleSpace": {"min": "2", "max": "6", "step": "2"}},
                {"name": "cell", "parameterType": "categorical",
                 "feasibleSpace": {"list": ["gru", "lstm"]}},
            ],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": "learningRate", "reference": "x"},
                    {"name": "units", "reference": "units"},
                    {"name": "cell", "reference": "cell"},
                    {"name": "trialName", "reference": "${trialSpec.Name}"},
                ],
                "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {
                    "spec": {"restartPolicy": "Never", "containers": [
                        {"name": "sidecar", "image": "busybox", "command": ["sleep"]},
                        {"name": "training-container", "image": "example/rnn:1",
                         "command": command}]}}}},
            },
        },
    }
    document["spec"].update(spec)
    return document


def fake_command(script: Path, *extra: str) -> list[str]:
    return ["python3", str(script), "--data-dir=gs://bucket/data", "--output-dir=/tmp/model",
            "--x=${trialParameters.learningRate}", *extra]


@pytest.fixture
def fake_trainer(tmp_path: Path) -> Path:
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    return script


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


# --------------------------------------------------------------------------
# (a) parsing, substitution, folder replacement
# --------------------------------------------------------------------------

def test_parse_experiment_reads_every_field_the_sweep_uses():
    document = experiment_document(
        ["rnn-classifier", "train", "--data-dir=gs://b/d", "--output-dir=/tmp/model"],
        earlyStopping={"algorithmName": "medianstop", "algorithmSettings": [
            {"name": "min_trials_required", "value": "2"}, {"name": "start_step", "value": "3"}]})
    document["spec"]["objective"]["metricStrategies"] = [{"name": "val_loss", "value": "min"}]
    experiment = parse_experiment(document)

    assert [p.name for p in experiment.parameters] == ["x", "units", "cell"]
    x, units, cell = experiment.parameters
    assert x.distribution.log and (x.distribution.low, x.distribution.high) == (0.001, 0.01)
    assert units.grid == (2, 4, 6) and units.distribution.step == 2
    assert cell.grid == ("gru", "lstm")
    assert experiment.metrics == ("val_macro_auc", "val_macro_f1", "val_loss")
    assert experiment.strategy("val_macro_auc") == "max"  # Katib's default: the objective type
    assert experiment.strategy("val_loss") == "min"
    assert experiment.early_stopping == MedianStopSettings(min_trials_required=2, start_step=3)
    assert (experiment.parallel_trials, experiment.max_trials,
            experiment.max_failed_trials) == (2, 3, 3)
    assert experiment.command[0] == "rnn-classifier"  # the primary container, not the sidecar
    assert experiment.metric_filters == (KATIB_METRICS_REGEX,)


def test_trial_command_substitutes_placeholders_and_points_at_local_folders(tmp_path):
    document = experiment_document(
        ["rnn-classifier", "train", "--data-dir=gs://bucket/survey", "--output-dir", "/tmp/model",
         "--learning-rate=${trialParameters.learningRate}", "--rnn-units=${trialParameters.units}",
         "--rnn-type=${trialParameters.cell}", "--tag=${trialParameters.trialName}"])
    experiment = parse_experiment(document)
    command = trial_command(experiment, {"x": "0.003", "units": "4", "cell": "lstm"},
                            tmp_path / "data", tmp_path / "out" / "model", "test-sweep-7")

    assert command[:3] == [sys.executable, "-m", "rnn_classifier.cli"]
    assert command[3:] == ["train", f"--data-dir={tmp_path / 'data'}", "--output-dir",
                           str(tmp_path / "out" / "model"), "--learning-rate=0.003",
                           "--rnn-units=4", "--rnn-type=lstm", "--tag=test-sweep-7"]


@pytest.mark.parametrize("change, message", [
    (lambda d: d["spec"]["trialTemplate"]["trialParameters"].pop(0), "undefined trialParameters"),
    (lambda d: d["spec"]["trialTemplate"].update(primaryContainerName="nope"), "primary container"),
    (lambda d: d["spec"]["parameters"][0]["feasibleSpace"].update(min="-1"), "needs min > 0"),
    (lambda d: d["spec"].update(metricsCollectorSpec={"collector": {"kind": "Prometheus"}}),
     "cannot run locally"),
    (lambda d: d["spec"].update(earlyStopping={"algorithmName": "truncation"}), "medianstop"),
])
def test_bad_manifests_are_clear_errors(change, message):
    document = experiment_document(fake_command(Path("t.py")))
    change(document)
    with pytest.raises(SweepError, match=message):
        parse_experiment(document)


def test_a_command_without_data_dir_is_an_error(tmp_path):
    experiment = parse_experiment(experiment_document(
        ["python3", "t.py", "--output-dir=/tmp/m", "--x=${trialParameters.learningRate}"]))
    with pytest.raises(SweepError, match="no --data-dir"):
        trial_command(experiment, {"x": "0.01"}, tmp_path, tmp_path / "m")


def test_metrics_are_parsed_with_katibs_regex_and_extracted_by_strategy():
    names = ("val_macro_auc", "val_macro_f1", "val_loss")
    line = "epoch=3 loss=0.4 val_loss=4.5e-01 val_macro_auc=0.91 val_macro_f1=nan"
    assert parse_metrics(line, names) == [("val_loss", 0.45), ("val_macro_auc", 0.91)]
    assert parse_metrics("training gru/focal on 560 examples", names) == []

    experiment = parse_experiment(experiment_document(fake_command(Path("t.py"))))
    lines = ["epoch=1 val_loss=0.5 val_macro_auc=0.80", "epoch=2 val_loss=0.4 val_macro_auc=0.95",
             "epoch=3 val_loss=0.3 val_macro_auc=0.90"]
    observations = [(number, *pair) for number, line in enumerate(lines)
                    for pair in parse_metrics(line, names)]
    # max of the objective; val_loss from the same epoch, not its own max.
    assert extract_metrics(observations, experiment) == {"val_macro_auc": 0.95, "val_loss": 0.40}
    latest = experiment_document(fake_command(Path("t.py")))
    latest["spec"]["objective"]["metricStrategies"] = [{"name": "val_macro_auc",
                                                        "value": "latest"}]
    assert extract_metrics(observations, parse_experiment(latest)) == {
        "val_macro_auc": 0.90, "val_loss": 0.30}


@pytest.mark.skipif(not KATIB_EXAMPLES.is_dir(), reason="Katib upstream examples not present")
def test_katib_upstream_examples_parse_or_say_why_not():
    for path in sorted(KATIB_EXAMPLES.glob("*.yaml")):
        if "metrics-collector" in path.name:
            with pytest.raises(SweepError, match="collector"):
                load_experiment(path)
        else:
            experiment = load_experiment(path)
            assert make_sampler(experiment, seed=0)[0] is not None


def test_project_manifest_trials_are_valid_train_invocations(tmp_path):
    experiment = load_experiment(PROJECT_MANIFEST)
    make_sampler(experiment, seed=0)
    values = {p.name: p.format(p.grid[0]) for p in experiment.parameters}
    command = trial_command(experiment, values, SAMPLE_DATA, tmp_path / "model")
    assert command[1:4] == ["-m", "rnn_classifier.cli", "train"]
    args = cli.build_parser().parse_args(command[3:])
    # Kept as strings by the CLI: Path() would collapse a gs:// URI's "//".
    assert args.data_dir == str(SAMPLE_DATA) and args.output_dir == str(tmp_path / "model")
    cli.resolve_config(args)  # every substituted value is a valid config value


# --------------------------------------------------------------------------
# (b) algorithm -> sampler
# --------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm, sampler, check", [
    ("random", optuna.samplers.RandomSampler, None),
    ("tpe", optuna.samplers.TPESampler, lambda s: not s._multivariate),
    ("multivariate-tpe", optuna.samplers.TPESampler, lambda s: s._multivariate),
    ("bayesianoptimization", optuna.samplers.TPESampler, None),
    ("grid", optuna.samplers.GridSampler, lambda s: len(s._all_grids) == 5 * 3 * 2),
    ("sobol", optuna.samplers.QMCSampler, lambda s: s._qmc_type == "sobol"),
])
def test_each_katib_algorithm_maps_to_its_sampler(algorithm, sampler, check):
    experiment = parse_experiment(experiment_document(fake_command(Path("t.py")), algorithm))
    made, notes = make_sampler(experiment, seed=3)
    assert isinstance(made, sampler)
    assert check is None or check(made)
    # Only approximations print a note (grid: the double without a step).
    assert bool(notes) == (algorithm in ("bayesianoptimization", "grid"))


def test_cmaes_maps_to_cmaes_sampler_with_categorical_fallback():
    # The cmaes package is in requirements.lock, so the sampler must really be built.
    experiment = parse_experiment(experiment_document(fake_command(Path("t.py")), "cmaes"))
    sampler, notes = make_sampler(experiment, seed=0)
    assert isinstance(sampler, optuna.samplers.CmaEsSampler)
    assert any("categorical" in note for note in notes)


@pytest.mark.parametrize("algorithm, message", [
    ("hyperband", "cannot run as a local sweep"), ("enas", "architecture search"),
    ("simulated-annealing", "unknown algorithm"),
])
def test_unsupported_and_unknown_algorithms_are_clear_errors(algorithm, message):
    experiment = parse_experiment(experiment_document(fake_command(Path("t.py")), algorithm))
    with pytest.raises(SweepError, match=message):
        make_sampler(experiment)


def test_unknown_algorithm_setting_is_an_error():
    document = experiment_document(fake_command(Path("t.py")), "tpe")
    document["spec"]["algorithm"]["algorithmSettings"] = [{"name": "n_startup", "value": "3"}]
    with pytest.raises(SweepError, match="n_startup"):
        make_sampler(parse_experiment(document))


# --------------------------------------------------------------------------
# (c) a real sweep of three trials
# --------------------------------------------------------------------------

def test_real_sweep_of_three_trials_writes_trials_csv_and_best_json(tmp_path, capsys):
    command = ["rnn-classifier", "train", "--data-dir=gs://bucket/survey",
               "--output-dir=/tmp/model", "--epochs=2", "--patience=2", "--rnn-layers=1",
               "--dense-units=8", "--batch-size=128",
               "--learning-rate=${trialParameters.learningRate}",
               "--rnn-units=${trialParameters.units}", "--rnn-type=${trialParameters.cell}"]
    manifest = tmp_path / "experiment.yaml"
    manifest.write_text(yaml.safe_dump(experiment_document(command, "tpe", maxTrialCount=16)))

    status = cli.main(["sweep", "--experiment", str(manifest), "--data-dir", str(SAMPLE_DATA),
                       "--output-dir", str(tmp_path / "sweep"), "--max-trials", "3",
                       "--parallel", "2", "--seed", "1"])

    assert status == 0
    rows = read_rows(tmp_path / "sweep" / "trials.csv")
    assert [row["trial"] for row in rows] == ["0", "1", "2"]
    assert {row["status"] for row in rows} == {SUCCEEDED}
    # Two epoch lines plus the trainer's closing `best epoch` line: Katib counts three too.
    assert all(row["steps"] == "3" and float(row["seconds"]) > 0 for row in rows)
    best = json.loads((tmp_path / "sweep" / "best.json").read_text())
    assert best["objective"]["name"] == "val_macro_auc"
    assert best["objective"]["value"] == max(float(row["val_macro_auc"]) for row in rows)
    assert set(best["parameters"]) == {"x", "units", "cell"}
    assert isinstance(best["parameters"]["units"], int)
    assert (Path(best["model_dir"]) / "model.keras").exists()
    output = capsys.readouterr().out
    assert output.count("started") == 3 and "sweep finished" in output


# --------------------------------------------------------------------------
# (d) median stopping, (e) failures
# --------------------------------------------------------------------------

def test_median_stop_rule_follows_katib():
    stop = MedianStop(MedianStopSettings(min_trials_required=2, start_step=2), maximize=True)
    stop.add_succeeded([0.7, 0.9, 0.99])  # mean of the first start_step values: 0.8
    assert stop.rule() is None
    stop.add_succeeded([0.9, 0.9])
    rule = stop.rule()
    assert rule == StopRule(median=pytest.approx(0.85), start_step=2, maximize=True)
    assert not rule.should_stop([0.1])  # before start_step
    assert rule.should_stop([0.1, 0.84])
    assert not rule.should_stop([0.1, 0.86])  # best so far counts, as Katib's collector


def test_median_stopping_kills_a_trial_below_the_median(tmp_path, fake_trainer):
    document = experiment_document(
        fake_command(fake_trainer, "--epochs=40", "--delay=0.05", "--low=2"),
        earlyStopping={"algorithmName": "medianstop", "algorithmSettings": [
            {"name": "min_trials_required", "value": "2"}, {"name": "start_step", "value": "2"}]})

    result = run_sweep(parse_experiment(document), tmp_path, tmp_path / "sweep", max_trials=3,
                       parallel=1, log=lambda line: None)

    statuses = [trial.status for trial in result.trials]
    assert statuses == [SUCCEEDED, SUCCEEDED, EARLY_STOPPED]
    stopped = result.trials[2]
    assert stopped.steps < 10 and stopped.seconds < 10  # 40 epochs would take 2 s and more
    log_lines = (tmp_path / "sweep" / "trials" / "2" / "trial.log").read_text().splitlines()
    assert len(log_lines) < 40
    assert result.best.number in (0, 1)


def test_failed_trials_stop_the_sweep_at_max_failed_trial_count(tmp_path, fake_trainer):
    experiment = parse_experiment(experiment_document(
        fake_command(fake_trainer, "--epochs=2", "--fail=true"), maxFailedTrialCount=2))

    result = run_sweep(experiment, tmp_path, tmp_path / "sweep", max_trials=6, parallel=1,
                       log=lambda line: None)

    assert [trial.status for trial in result.trials] == [FAILED, FAILED]
    assert "maxFailedTrialCount" in result.stopped_because
    assert "bad hyperparameters" in result.trials[0].message
    assert result.best is None and not (tmp_path / "sweep" / "best.json").exists()
    assert len(read_rows(tmp_path / "sweep" / "trials.csv")) == 2


def test_cli_exits_1_when_no_trial_succeeds_and_2_on_a_reused_output(tmp_path, fake_trainer,
                                                                     capsys):
    manifest = tmp_path / "experiment.yaml"
    manifest.write_text(yaml.safe_dump(experiment_document(
        fake_command(fake_trainer, "--epochs=2", "--fail=true"), maxFailedTrialCount=1)))
    argv = ["sweep", "--experiment", str(manifest), "--data-dir", str(tmp_path),
            "--output-dir", str(tmp_path / "sweep"), "--parallel", "1"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 1
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert "already holds a sweep" in capsys.readouterr().err
