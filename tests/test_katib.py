"""The Katib Experiment: search space vs config, strict validation, the metrics contract.

Tiers, cheapest first: the search space against TrainConfig; the checked-in
manifest (valid, no drift from a fresh generation); one broken manifest per
rule, each rejected with a message naming the field; the CLI; then a real
tiny training whose stdout is parsed with Katib's own StdOut regex.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rnn_classifier import cli, katib
from rnn_classifier import config as config_module
from rnn_classifier import search_space as space
from rnn_classifier.search_space import SearchParameter, SearchSpaceError

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / katib.DEFAULT_MANIFEST
SAMPLE_DATA = Path(__file__).parent / "fixtures" / "sample_data"
SHARED_KATIB = REPO.parent / "shared" / "katib"
# Katib's StdOut collector default, copied from the issue (not from katib.py).
KATIB_STDOUT_REGEX = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
METRICS = (space.OBJECTIVE_METRIC, *space.ADDITIONAL_METRICS)


@pytest.fixture(scope="module")
def valid() -> dict:
    return katib.build_experiment()


# --------------------------------------------------------------------------
# The search space against TrainConfig
# --------------------------------------------------------------------------

def test_search_space_names_are_config_fields_with_valid_ranges():
    space.check_against_config()
    names = [parameter.name for parameter in space.SEARCH_SPACE]
    assert set(names) <= set(config_module.field_names())
    assert set(names) == {"learning_rate", "rnn_units", "dropout", "l2", "gamma", "batch_size",
                          "rnn_type", "loss"}
    for parameter in space.SEARCH_SPACE:
        assert parameter.problems() == [], parameter.name
        meta = config_module.field_metadata(parameter.name)
        if parameter.is_range:
            for bound in (parameter.min, parameter.max, *parameter.grid):
                config_module.DEFAULTS.replace(**{parameter.name: bound})  # raises if invalid
            assert meta["minimum"] is None or parameter.min >= meta["minimum"]
            assert meta["maximum"] is None or parameter.max <= meta["maximum"]
        else:
            for value in parameter.values:
                config_module.DEFAULTS.replace(**{parameter.name: value})
    assert next(p for p in space.SEARCH_SPACE if p.name == "learning_rate").log


def test_metric_names_are_what_the_trainer_prints():
    from rnn_classifier.train import HISTORY_KEYS

    assert set(METRICS) <= set(HISTORY_KEYS)
    assert space.OBJECTIVE_TYPE == "maximize"


@pytest.mark.parametrize("parameter, fragment", [
    (SearchParameter("hidden_units", "int", 8, 64), "'hidden_units' is not a TrainConfig field"),
    (SearchParameter("rnn_units", "double", 8.0, 64.0), "double does not fit config field"),
    (SearchParameter("rnn_type", "categorical", values=("gru", "rnn")),
     "'rnn' is not one of rnn_type's choices"),
    (SearchParameter("dropout", "double", 0.1, 0.95), "0.95 is above dropout's config maximum"),
    (SearchParameter("learning_rate", "double", 1e-9, 1e-3, log=True),
     "below learning_rate's config minimum"),
    (SearchParameter("gamma", "double", 3.0, 1.0), "min 3.0 must be below max 1.0"),
    (SearchParameter("l2", "double", 0.0, 1e-3, log=True), "logUniform needs min > 0"),
    (SearchParameter("rnn_units", "int", 8.5, 64), "8.5 is not a valid int"),
    (SearchParameter("batch_size", "discrete", values=(32, -1)), "below batch_size's config"),
    (SearchParameter("loss", "categorical", values=()), "must list at least one value"),
    (SearchParameter("mixed", "categorical", values=("true", "maybe")), "not a boolean word"),
    (SearchParameter("dropout", "uniform", 0.0, 0.5), "'uniform' is not one of"),
], ids=lambda value: value.name if isinstance(value, SearchParameter) else None)
def test_a_bad_search_space_is_rejected(parameter, fragment):
    with pytest.raises(SearchSpaceError, match=re.escape(fragment)) as caught:
        space.check_against_config((*space.SEARCH_SPACE[:1], parameter))
    assert f"parameter {parameter.name}" in str(caught.value)
    with pytest.raises(SearchSpaceError):
        katib.build_experiment(parameters=(parameter,))


def test_a_parameter_searched_twice_is_rejected():
    with pytest.raises(SearchSpaceError, match="dropout: name: appears 2 times"):
        space.check_against_config((space.SEARCH_SPACE[2], space.SEARCH_SPACE[2]))


@pytest.mark.parametrize("algorithm", ["tpe", "grid"])
def test_parameters_read_back_from_the_manifest_fit_the_config(algorithm):
    for parameter in space.SEARCH_SPACE:
        read = SearchParameter.from_katib(parameter.to_katib(algorithm))
        assert read.problems() == []
        if algorithm != "grid":
            assert read == dataclasses.replace(parameter, grid=())
        elif parameter.is_range:
            assert read.parameter_type == "discrete" and read.values == parameter.grid


# --------------------------------------------------------------------------
# The checked-in manifest
# --------------------------------------------------------------------------

def test_checked_in_manifest_is_valid_and_equals_a_fresh_generation(valid):
    text = MANIFEST.read_text()
    assert text == katib.dump_manifest(valid), (
        f"{MANIFEST} is stale: run `make katib-manifest`")
    assert text.startswith("# GENERATED by `make katib-manifest`")
    assert katib.validate_experiment(katib.load_manifest(MANIFEST)) == []


def test_manifest_structure(valid):
    spec = valid["spec"]
    assert spec["objective"] == {"type": "maximize", "objectiveMetricName": "val_macro_auc",
                                 "additionalMetricNames": ["val_macro_f1", "val_loss"]}
    assert spec["algorithm"]["algorithmName"] == "tpe"
    assert spec["earlyStopping"]["algorithmName"] == "medianstop"
    assert (spec["parallelTrialCount"], spec["maxTrialCount"], spec["maxFailedTrialCount"]) \
        == (2, 16, 3)
    assert spec["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}, "source": {
        "filter": {"metricsFormat": [KATIB_STDOUT_REGEX]}}}
    lr = next(p for p in spec["parameters"] if p["name"] == "learning_rate")
    assert lr["feasibleSpace"]["distribution"] == "logUniform"
    names = [p["name"] for p in spec["parameters"]]
    template = spec["trialTemplate"]
    assert [(t["name"], t["reference"]) for t in template["trialParameters"]] \
        == [(name, name) for name in names]
    job = template["trialSpec"]
    assert (job["apiVersion"], job["kind"], job["spec"]["backoffLimit"]) == ("batch/v1", "Job", 0)
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["name"] == template["primaryContainerName"]
    assert container["image"] == katib.DEFAULT_IMAGE
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 1000
    assert security["allowPrivilegeEscalation"] is False
    assert container["command"][:4] == [
        "rnn-classifier", "train", "--data-dir=gs://YOUR_BUCKET/survey/reference",
        "--output-dir=/tmp/model"]
    assert container["command"][4:] == [f"{cli.flag_name(name)}=${{trialParameters.{name}}}"
                                        for name in names]


def test_default_image_is_the_pipeline_image():
    pytest.importorskip("kfp")
    from components import DEFAULT_IMAGE

    assert katib.DEFAULT_IMAGE == DEFAULT_IMAGE


def test_numbers_stay_strings_for_yaml_1_2_readers(valid):
    """kubectl reads `1e-06` unquoted as a number; Katib's API wants strings there."""
    number = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|0o[0-7]+|0x[0-9a-fA-F]+")

    def plain_number_like_strings(node):
        if isinstance(node, yaml.ScalarNode):
            if node.style is None and node.tag.endswith(":str") and number.fullmatch(node.value):
                yield node.value
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                yield from plain_number_like_strings(key)
                yield from plain_number_like_strings(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                yield from plain_number_like_strings(item)

    text = katib.dump_manifest(katib.build_experiment(algorithm="grid"))
    assert list(plain_number_like_strings(yaml.compose(text))) == []
    assert yaml.safe_load(text) == katib.build_experiment(algorithm="grid")
    assert "e-0" not in katib.dump_manifest(valid)


@pytest.mark.parametrize("algorithm", katib.BUILD_ALGORITHMS)
def test_every_buildable_algorithm_gives_a_valid_experiment(algorithm):
    manifest = katib.build_experiment(algorithm=algorithm, gpu=False, epochs=20)
    assert katib.validate_experiment(manifest) == []
    container = manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"][0]
    assert "resources" not in container and "--epochs=20" in container["command"]
    if algorithm == "grid":
        assert {p["parameterType"] for p in manifest["spec"]["parameters"]} \
            == {"discrete", "categorical"}


@pytest.mark.parametrize("algorithm", [*katib.UNBUILDABLE_ALGORITHMS, "tpee"])
def test_algorithms_this_search_space_cannot_drive_are_refused(algorithm):
    with pytest.raises(config_module.ConfigError, match=algorithm):
        katib.build_experiment(algorithm=algorithm)


def test_upstream_katib_examples_pass_the_katib_layers():
    """The strict schema and rules accept what Katib's own examples do (not too strict)."""
    examples = sorted((SHARED_KATIB / "examples").glob("*.yaml"))
    if not examples:
        pytest.skip(f"no upstream examples at {SHARED_KATIB}")
    for path in examples:
        assert katib.validate_experiment(katib.load_manifest(path), project_rules=False) == [], \
            path.name


def test_vendored_swagger_is_katibs():
    upstream = SHARED_KATIB / "katib-v1beta1-swagger.json"
    if not upstream.exists():
        pytest.skip(f"no upstream swagger at {upstream}")
    vendored = REPO / "rnn_classifier" / "schemas" / "katib-v1beta1-swagger.json"
    assert vendored.read_bytes() == upstream.read_bytes()


def test_the_strict_schema_closes_every_katib_object():
    schema = katib.experiment_schema()
    for name, definition in schema["$defs"].items():
        if name.startswith("v1beta1.") and "properties" in definition:
            assert definition["additionalProperties"] is not True, name


def test_the_pinned_kubernetes_version_is_shipped():
    from kubernetes_validate import utils

    assert katib.KUBERNETES_VERSION in utils.all_versions()


# --------------------------------------------------------------------------
# Broken manifests: each breaks one thing and must be named by its path
# --------------------------------------------------------------------------

def _spec(m):
    return m["spec"]


def _job(m):
    return m["spec"]["trialTemplate"]["trialSpec"]


def _container(m):
    return _job(m)["spec"]["template"]["spec"]["containers"][0]


def _parameter(m, name):
    return next(p for p in m["spec"]["parameters"] if p["name"] == name)


def _swap_dropout_and_l2(m):
    # Every placeholder still declared and used: only the flag wiring is wrong.
    command = _container(m)["command"]
    command[6], command[7] = "--dropout=${trialParameters.l2}", "--l2=${trialParameters.dropout}"


def _drop_gamma(m):
    _container(m)["command"].remove("--gamma=${trialParameters.gamma}")


BROKEN = [
    ("unknown top-level spec field", lambda m: _spec(m).update(maxTrailCount=3),
     "spec.maxTrailCount", "unknown field"),
    ("unknown metadata field", lambda m: m["metadata"].update(nmae="x"),
     "metadata.nmae", "unknown field"),
    ("unknown field in the objective", lambda m: _spec(m)["objective"].update(goals=0.9),
     "spec.objective.goals", "unknown field"),
    ("count of the wrong type", lambda m: _spec(m).update(maxTrialCount="16"),
     "spec.maxTrialCount", "not of type 'integer'"),
    ("feasible-space number not a string",
     lambda m: _parameter(m, "dropout")["feasibleSpace"].update(max=0.5),
     "spec.parameters[2].feasibleSpace.max", "not of type 'string'"),
    ("wrong apiVersion", lambda m: m.update(apiVersion="kubeflow.org/v1"),
     "apiVersion", "must be kubeflow.org/v1beta1"),
    ("experiment name", lambda m: m["metadata"].update(name="RNN_sweep"),
     "metadata.name", "lower case"),
    ("unknown algorithm", lambda m: _spec(m)["algorithm"].update(algorithmName="tpee"),
     "spec.algorithm.algorithmName", "'tpee' is not a Katib algorithm"),
    ("unknown early-stopping algorithm",
     lambda m: _spec(m)["earlyStopping"].update(algorithmName="hyperband"),
     "spec.earlyStopping.algorithmName", "not a Katib early-stopping algorithm"),
    ("medianstop setting out of range",
     lambda m: _spec(m)["earlyStopping"]["algorithmSettings"][1].update(value="0"),
     "spec.earlyStopping.algorithmSettings[1].value", "start_step must be an integer >= 1"),
    ("parameterType wrong", lambda m: _parameter(m, "learning_rate").update(
        parameterType="float"), "spec.parameters[0].parameterType", "'float' is not supported"),
    ("min >= max", lambda m: _parameter(m, "gamma")["feasibleSpace"].update(min="5.0", max="1.0"),
     "spec.parameters[4].feasibleSpace.min", "must be below max"),
    ("list for a double", lambda m: _parameter(m, "gamma")["feasibleSpace"].update(list=["1"]),
     "spec.parameters[4].feasibleSpace.list", "not supported for parameterType double"),
    ("unknown distribution", lambda m: _parameter(m, "l2")["feasibleSpace"].update(
        distribution="log"), "spec.parameters[3].feasibleSpace.distribution", "not supported"),
    ("categorical value outside the config choices",
     lambda m: _parameter(m, "loss")["feasibleSpace"]["list"].append("hinge"),
     "spec.parameters[7].feasibleSpace.list[4]", "'hinge' is not one of loss's choices"),
    ("range outside the config bounds",
     lambda m: _parameter(m, "dropout")["feasibleSpace"].update(max="0.95"),
     "spec.parameters[2].feasibleSpace.max", "above dropout's config maximum 0.9"),
    ("parameter that is not a config field", lambda m: _parameter(m, "gamma").update(
        name="focal_gamma"), "spec.parameters[4].name", "not a TrainConfig field"),
    ("undeclared trial parameter",
     lambda m: _container(m)["command"].append("--seed=${trialParameters.foo}"),
     "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].command[12]",
     "${trialParameters.foo}, which spec.trialTemplate.trialParameters does not declare"),
    ("declared but unused trial parameter", _drop_gamma,
     "spec.trialTemplate.trialParameters[4].name", "'gamma' is declared but"),
    ("reference to a missing parameter",
     lambda m: _spec(m)["trialTemplate"]["trialParameters"][1].update(reference="units"),
     "spec.trialTemplate.trialParameters[1].reference", "not a parameter in spec.parameters"),
    ("trial parameters wired to each other's flags", _swap_dropout_and_l2,
     "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].command",
     "lacks --dropout=${trialParameters.dropout}"),
    ("objective metric the trainer never prints",
     lambda m: _spec(m)["objective"].update(objectiveMetricName="val_auc"),
     "spec.objective.objectiveMetricName", "'val_auc' is never printed by the trainer"),
    ("additional metric repeats the objective",
     lambda m: _spec(m)["objective"]["additionalMetricNames"].append("val_macro_auc"),
     "spec.objective.additionalMetricNames", "must not contain"),
    ("metrics regex with one group",
     lambda m: _spec(m)["metricsCollectorSpec"]["source"]["filter"].update(
         metricsFormat=[r"([\w|-]+)\s*=\s*[+-]?\d*(?:\.\d+)?"]),
     "spec.metricsCollectorSpec.source.filter.metricsFormat[0]", "has 1 capturing group"),
    ("metrics regex that does not compile",
     lambda m: _spec(m)["metricsCollectorSpec"]["source"]["filter"].update(
         metricsFormat=[r"([\w|-]+=(\d+)"]),
     "spec.metricsCollectorSpec.source.filter.metricsFormat[0]", "invalid regular expression"),
    ("metrics regex that misses the trainer's lines",
     lambda m: _spec(m)["metricsCollectorSpec"]["source"]["filter"].update(
         metricsFormat=[r"(\w+):\s*(\d+)"]),
     "spec.metricsCollectorSpec.source.filter.metricsFormat", "does not extract val_macro_auc"),
    ("metrics collector the trainer cannot feed",
     lambda m: _spec(m)["metricsCollectorSpec"]["collector"].update(kind="TensorFlowEvent"),
     "spec.metricsCollectorSpec.collector.kind", "use StdOut"),
    ("restartPolicy Always", lambda m: _job(m)["spec"]["template"]["spec"].update(
        restartPolicy="Always"),
     "spec.trialTemplate.trialSpec.spec.template.spec.restartPolicy", "Never or OnFailure"),
    ("Job field typo (kubernetes-validate)",
     lambda m: _job(m)["spec"]["template"]["spec"].update(restartPolice="Never"),
     "spec.trialTemplate.trialSpec.spec.template.spec.restartPolice",
     "unknown field (allowed here: activeDeadlineSeconds"),
    ("Job field of the wrong type (kubernetes-validate)",
     lambda m: _job(m)["spec"].update(backoffLimit="none"),
     "spec.trialTemplate.trialSpec.spec.backoffLimit", "batch/v1 Job schema"),
    ("container field typo (kubernetes-validate)",
     lambda m: _container(m).update(imagePullPolcy="Always"),
     "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].imagePullPolcy",
     "unknown field"),
    ("primary container that does not exist",
     lambda m: _spec(m)["trialTemplate"].update(primaryContainerName="trainer"),
     "spec.trialTemplate.primaryContainerName", "names no container"),
    ("trial Job with a name", lambda m: _job(m).update(metadata={"name": "trial"}),
     "spec.trialTemplate.trialSpec.metadata", "must be omitted"),
    ("data from a local path", lambda m: _container(m)["command"].__setitem__(
        2, "--data-dir=/data"), "spec.trialTemplate.trialSpec.spec.template.spec.containers[0]"
     ".command", "needs --data-dir=gs://"),
    ("parallel > max trials", lambda m: _spec(m).update(parallelTrialCount=20),
     "spec.parallelTrialCount", "less than or equal to spec.maxTrialCount (16)"),
    ("default parallel > max trials",
     lambda m: (_spec(m).pop("parallelTrialCount"), _spec(m).update(maxTrialCount=2,
                                                                    maxFailedTrialCount=1)),
     "spec.parallelTrialCount", "3 must be less than or equal to spec.maxTrialCount (2)"),
    ("negative maxFailedTrialCount", lambda m: _spec(m).update(maxFailedTrialCount=-1),
     "spec.maxFailedTrialCount", "must not be less than 0"),
    ("zero maxTrialCount", lambda m: _spec(m).update(maxTrialCount=0),
     "spec.maxTrialCount", "must be greater than 0"),
    ("no objective", lambda m: _spec(m).pop("objective"), "spec.objective", "must be specified"),
    ("no parameters", lambda m: _spec(m).pop("parameters"), "spec.parameters",
     "spec.parameters or spec.nasConfig must be specified"),
]


@pytest.mark.parametrize("mutate, path, fragment", [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_a_broken_manifest_is_rejected_naming_the_field(valid, mutate, path, fragment):
    broken = copy.deepcopy(valid)
    mutate(broken)
    problems = katib.validate_experiment(broken)
    assert any(problem.startswith(path) and fragment in problem for problem in problems), \
        problems


def test_not_a_mapping_is_one_problem():
    assert katib.validate_experiment(["apiVersion"]) == [
        "(document): expected a mapping (a Katib Experiment), got list"]


# --------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------

def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnn_classifier.cli", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_cli_validate_exits_0_on_the_manifest_and_2_naming_the_field(valid, tmp_path):
    good = _run_cli("katib", "validate", str(MANIFEST))
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == f"{MANIFEST}: valid"

    broken = copy.deepcopy(valid)
    broken["spec"]["algorithm"]["algorithmName"] = "tpee"
    broken["spec"]["maxFailedTrialCount"] = -1
    path = tmp_path / "broken.yaml"
    path.write_text(katib.dump_manifest(broken))
    bad = _run_cli("katib", "validate", str(path))
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert f"error: {path}: spec.algorithm.algorithmName: 'tpee' is not a Katib algorithm" \
        in "\n".join(lines)
    assert any(line.startswith(f"error: {path}: spec.maxFailedTrialCount:") for line in lines)
    assert all(line.startswith(f"error: {path}: ") for line in lines)


@pytest.mark.parametrize("text, fragment", [
    ("spec: [unclosed", "not valid YAML"),
    ("- a list\n", "expected one YAML mapping"),
    (None, "cannot read manifest"),
])
def test_cli_validate_reports_an_unreadable_file(tmp_path, capsys, text, fragment):
    path = tmp_path / "experiment.yaml"
    if text is not None:
        path.write_text(text)
    assert cli.main(["katib", "validate", str(path)]) == 2
    assert f"error: {path}: {fragment}" in capsys.readouterr().err


def test_cli_manifest_writes_a_valid_experiment(tmp_path, capsys):
    output = tmp_path / "new" / "experiment.yaml"
    assert cli.main(["katib", "manifest", "--output", str(output), "--data-uri", "gs://b/survey",
                     "--image", "registry.example/rnn:1", "--name", "lstm-sweep",
                     "--namespace", "team", "--algorithm", "random", "--max-trials", "8",
                     "--parallel-trials", "4", "--max-failed-trials", "2", "--epochs", "30",
                     "--gpu=false"]) == 0
    assert f"wrote {output} (valid)" in capsys.readouterr().out
    manifest = katib.load_manifest(output)
    assert katib.validate_experiment(manifest) == []
    assert manifest == katib.build_experiment(
        name="lstm-sweep", namespace="team", image="registry.example/rnn:1",
        data_uri="gs://b/survey", algorithm="random", max_trials=8, parallel_trials=4,
        max_failed_trials=2, gpu=False, epochs=30)


def test_cli_manifest_writes_nothing_when_invalid(tmp_path, capsys):
    output = tmp_path / "experiment.yaml"
    assert cli.main(["katib", "manifest", "--output", str(output), "--max-trials", "1"]) == 2
    assert "spec.parallelTrialCount: 2 must be less than or equal" in capsys.readouterr().err
    assert not output.exists()


def test_trial_command_with_sampled_values_parses_into_a_valid_config(valid):
    """Katib substitutes a string per placeholder; the train CLI must accept each one."""
    template = valid["spec"]["trialTemplate"]
    [container] = template["trialSpec"]["spec"]["template"]["spec"]["containers"]
    references = {t["name"]: t["reference"] for t in template["trialParameters"]}
    by_name = {p.name: p for p in space.SEARCH_SPACE}

    def samples(parameter: SearchParameter) -> list[str]:
        if not parameter.is_range:
            return [space.katib_value(v) for v in parameter.values]
        low, high = parameter.min, parameter.max
        middle = math.sqrt(low * high) if parameter.log else (low + high) / 2
        # As suggestion services print them: str(float), int as digits.
        middle = int(middle) if parameter.parameter_type == "int" else middle
        return [space.katib_value(low), str(middle), space.katib_value(high)]

    for pick in range(4):  # low ends, middles, high ends, then the last list values
        chosen = {}
        for name, reference in references.items():
            options = samples(by_name[reference])
            chosen[name] = options[min(pick, len(options) - 1)]
        command = [re.sub(r"\$\{trialParameters\.(.+?)\}",
                          lambda match, chosen=chosen: chosen[match.group(1)], arg)
                   for arg in container["command"]]
        assert "${" not in " ".join(command)
        assert command[0] == "rnn-classifier"
        args = cli.build_parser().parse_args(command[1:])
        assert args.command == "train"
        config = cli.resolve_config(args)
        for name, reference in references.items():
            assert getattr(config, reference) == by_name[reference].parse_value(chosen[name])


# --------------------------------------------------------------------------
# The metrics contract: a real training, parsed as Katib parses it
# --------------------------------------------------------------------------

def _katib_parse(line: str) -> dict[str, str]:
    """name -> value as Katib's collector takes them: group 1, group 2, stripped."""
    return {match.group(1).strip(): match.group(2).strip()
            for match in re.finditer(KATIB_STDOUT_REGEX, line)}


@pytest.mark.slow
def test_a_real_training_reports_the_objective_and_metrics_every_epoch(tmp_path):
    assert katib.STDOUT_METRICS_FORMAT == KATIB_STDOUT_REGEX
    run = subprocess.run(
        [sys.executable, "-m", "rnn_classifier.cli", "train", "--data-dir", str(SAMPLE_DATA),
         "--output-dir", str(tmp_path / "model"), "--epochs", "2", "--rnn-units", "4",
         "--dense-units", "4", "--batch-size", "128"],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    epoch_lines = [line for line in lines if "epoch" in _katib_parse(line)]
    assert [_katib_parse(line)["epoch"] for line in epoch_lines] == ["1", "2"], run.stdout
    for line in epoch_lines:
        parsed = _katib_parse(line)
        for metric in METRICS:
            assert metric in parsed, (metric, line)
            assert math.isfinite(float(parsed[metric])), (metric, line)
    # Katib records every match of a metric name on any line: each must be a number.
    for line in lines:
        for name, value in _katib_parse(line).items():
            if name in METRICS:
                assert math.isfinite(float(value)), (name, line)
    # The validator's model of the collector agrees with the regex applied here.
    collected = katib.collect_metrics(lines, [KATIB_STDOUT_REGEX], METRICS)
    assert sum(name == space.OBJECTIVE_METRIC for name, _ in collected) >= len(epoch_lines)
