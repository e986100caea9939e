"""Local runner for a Katib Experiment: the same manifest, the same trial CLI.

`rnn-classifier sweep --experiment manifests/katib/experiment.yaml ...` reads
the Experiment the cluster runs and plays it on this machine:

* the search space is `spec.parameters` (int, double, categorical, discrete;
  `feasibleSpace` min/max/step/list/distribution);
* each trial runs the primary container's `command` + `args` as a
  subprocess, with `${trialParameters.x}` substituted exactly as Katib does
  and the image ignored; the `--data-dir` argument is pointed at the local
  data and `--output-dir` at `OUT/trials/<n>/model` (the manifest's `gs://`
  and `/tmp` paths only mean something on the cluster);
* metrics come from the trial's stdout and stderr, line by line, with Katib's
  StdOut collector regex (or the manifest's `metricsCollectorSpec` filter);
* suggestions come from Optuna, mapped from Katib's algorithm names
  (`SAMPLERS` below says which are exact and which approximate);
* `spec.earlyStopping` medianstop is applied the way Katib's metrics
  collector applies it (see `MedianStop`);
* `maxTrialCount`, `parallelTrialCount`, `maxFailedTrialCount` and the
  objective `goal` bound the run as on the cluster.

It writes `OUT/trials.csv` (one row per trial) and `OUT/best.json` (the best
succeeded trial), both replaced atomically after every finished trial, and
each trial's log beside its model.

A trial's metric value is extracted as Katib extracts it: by the metric's
strategy in `spec.objective.metricStrategies`, which Katib's defaulting
webhook fills with the objective type (`max` for a maximised objective) for
every metric not named there. For the objective that is what we want: our
trainer restores its best epoch (by `--monitor`, val_macro_auc by default),
so the maximum is the value of the model it saved; its last line repeats
that epoch's figures, so `latest` would agree. Additional metrics without an
explicit strategy are NOT extracted by the objective's strategy (that would
report the maximum val_loss); they are read from the same observation as the
objective's value, so a row of trials.csv describes one epoch. This is the
one place where the local sweep deliberately differs from Katib's record.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import yaml

from rnn_classifier.config import ConfigError

# Katib's StdOut/File collector default filter (TEXT format): group 1 the
# name, group 2 the value.
KATIB_METRICS_REGEX = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"

SUCCEEDED, FAILED, EARLY_STOPPED = "Succeeded", "Failed", "EarlyStopped"
# Katib's names: a trial that exited 0 without reporting the objective, and
# one ended by the sweep itself (interrupt). Both count as failures, as on
# the cluster.
METRICS_UNAVAILABLE, KILLED = "MetricsUnavailable", "Killed"

# Katib's defaults where the manifest leaves a field out.
DEFAULT_PARALLEL_TRIALS = 3
DEFAULT_MIN_TRIALS_REQUIRED = 3
DEFAULT_START_STEP = 4
# A double parameter without a step has no natural grid: this many evenly
# spaced points (geometric on a log scale), min and max included.
GRID_POINTS_PER_DOUBLE = 5

# Algorithm name -> (Optuna sampler, note printed when it is an approximation).
SAMPLERS = {
    "random": ("RandomSampler", None),
    "tpe": ("TPESampler", None),
    "multivariate-tpe": ("TPESampler(multivariate=True)", None),
    "cmaes": ("CmaEsSampler", None),
    "grid": ("GridSampler", None),
    "sobol": ("QMCSampler(qmc_type='sobol')", None),
    "bayesianoptimization": (
        "TPESampler", "Katib's bayesianoptimization (scikit-optimize Gaussian process) is "
        "approximated by Optuna's TPE, also a sequential model-based optimiser; "
        "n_initial_points and random_state are honoured, the GP settings are ignored"),
}
# Katib algorithms that change what a trial is (resource schedules, population
# training, architecture search), so no sampler can stand in for them.
UNSUPPORTED_ALGORITHMS = {
    "hyperband": "it allocates epochs per trial in brackets",
    "pbt": "it copies and perturbs running trials' checkpoints",
    "enas": "it is a neural architecture search",
    "darts": "it is a neural architecture search",
}
# Settings Katib accepts per algorithm (others are rejected by its validator).
ALGORITHM_SETTINGS = {
    "random": {"random_state"},
    "tpe": {"n_startup_trials", "n_ei_candidates", "random_state"},
    "multivariate-tpe": {"n_startup_trials", "n_ei_candidates", "random_state"},
    "cmaes": {"random_state", "sigma", "restart_strategy"},
    "grid": {"random_state"},
    "sobol": {"random_state"},
    "bayesianoptimization": {"base_estimator", "n_initial_points", "acq_func", "acq_optimizer",
                             "random_state"},
}

_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]+)\}")
_META_REFERENCE = re.compile(r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion)\}$")


class SweepError(ConfigError):
    """A manifest or sweep argument that cannot be run (exit status 2 from the CLI)."""


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One entry of `spec.parameters`, as an Optuna distribution plus its grid."""

    name: str
    type: str
    distribution: Any  # optuna.distributions.BaseDistribution
    grid: tuple
    note: str | None = None

    def format(self, value: Any) -> str:
        """The text Katib substitutes for `value` (`32`, `0.001`, `gru`)."""
        if self.type == "int":
            return str(int(value))
        return str(value)

    def typed(self, value: Any) -> Any:
        """`value` as JSON wants it: int, float or the categorical string."""
        if self.type == "int":
            return int(value)
        if self.type == "double":
            return float(value)
        return value


@dataclasses.dataclass(frozen=True)
class MedianStopSettings:
    """Katib's medianstop settings."""

    min_trials_required: int = DEFAULT_MIN_TRIALS_REQUIRED
    start_step: int = DEFAULT_START_STEP


@dataclasses.dataclass(frozen=True)
class Experiment:
    """The parts of a Katib Experiment a local sweep needs."""

    name: str
    parameters: tuple[Parameter, ...]
    objective_metric: str
    objective_type: str  # "maximize" or "minimize"
    goal: float | None
    additional_metrics: tuple[str, ...]
    metric_strategies: dict[str, str]  # only those given explicitly
    algorithm: str
    algorithm_settings: dict[str, str]
    early_stopping: MedianStopSettings | None
    parallel_trials: int
    max_trials: int | None
    max_failed_trials: int | None
    trial_parameters: dict[str, str]  # placeholder name -> parameter name or meta reference
    command: tuple[str, ...]
    env: dict[str, str]
    metric_filters: tuple[str, ...]
    trial_kind: str = "Job"
    trial_api_version: str = "batch/v1"
    namespace: str = "default"

    @property
    def maximize(self) -> bool:
        """True when a larger objective is better."""
        return self.objective_type == "maximize"

    @property
    def metrics(self) -> tuple[str, ...]:
        """Objective first, then the additional metrics (Katib's order)."""
        return (self.objective_metric, *self.additional_metrics)

    def strategy(self, metric: str) -> str:
        """min, max or latest: explicit, else the objective type (Katib's default)."""
        default = "max" if self.maximize else "min"
        return self.metric_strategies.get(metric, default)


# --------------------------------------------------------------------------
# Reading the manifest
# --------------------------------------------------------------------------

def load_experiment(path: str | Path) -> Experiment:
    """Read the Experiment in a YAML file (the one `kind: Experiment` document).

    Raises:
        SweepError: the file cannot be read or is not a runnable Experiment.
    """
    path = Path(path)
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    except OSError as error:
        raise SweepError(f"{path}: cannot read the experiment ({error.strerror})") from error
    except yaml.YAMLError as error:
        raise SweepError(f"{path}: not valid YAML ({error})") from error
    experiments = [doc for doc in documents
                   if isinstance(doc, dict) and doc.get("kind") == "Experiment"]
    if len(experiments) != 1:
        raise SweepError(f"{path}: expected one `kind: Experiment` document, found "
                         f"{len(experiments)}")
    return parse_experiment(experiments[0], str(path))


def _settings(items: Any, where: str) -> dict[str, str]:
    if items is None:
        return {}
    if not isinstance(items, list) or not all(isinstance(item, dict) and "name" in item
                                              for item in items):
        raise SweepError(f"{where}: expected a list of {{name, value}}")
    return {str(item["name"]): str(item.get("value", "")) for item in items}


def _number(text: Any, kind: type, where: str) -> float | int:
    try:
        return kind(str(text))
    except ValueError as error:
        raise SweepError(f"{where}: {text!r} is not a valid {kind.__name__}") from error


def _parameter(spec: dict, source: str) -> Parameter:
    """One `spec.parameters` entry -> Parameter (distribution and grid)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    name = spec.get("name")
    kind = spec.get("parameterType")
    space = spec.get("feasibleSpace") or {}
    where = f"{source}: parameter {name!r}"
    if not name:
        raise SweepError(f"{source}: a parameter has no name")
    distribution_name = space.get("distribution") or "uniform"
    if distribution_name not in ("uniform", "logUniform", "normal", "logNormal"):
        raise SweepError(f"{where}: unknown distribution {distribution_name!r}")
    log = distribution_name in ("logUniform", "logNormal")
    # Optuna has no bounded normal; Katib's own Optuna service samples these
    # within [min, max] too, so the shape is the approximation, not the range.
    note = (f"parameter {name}: {distribution_name} is sampled as "
            f"{'log-uniform' if log else 'uniform'} within [min, max]"
            if distribution_name in ("normal", "logNormal") else None)

    if kind in ("categorical", "discrete"):
        values = space.get("list")
        if not values:
            raise SweepError(f"{where}: a {kind} parameter needs feasibleSpace.list")
        # Katib substitutes the list's strings verbatim, so they stay strings.
        choices = tuple(str(value) for value in values)
        if kind == "discrete":
            for value in choices:
                _number(value, float, where)
        return Parameter(name, kind, CategoricalDistribution(choices), choices)

    if kind not in ("int", "double"):
        raise SweepError(f"{where}: parameterType {kind!r} is not int, double, categorical "
                         "or discrete")
    if "min" not in space or "max" not in space:
        raise SweepError(f"{where}: an {kind} parameter needs feasibleSpace min and max")
    number = int if kind == "int" else float
    low = _number(space["min"], number, where)
    high = _number(space["max"], number, where)
    step = _number(space["step"], number, where) if space.get("step") else None
    if low > high:
        raise SweepError(f"{where}: min {low} is above max {high}")
    if step is not None and step <= 0:
        raise SweepError(f"{where}: step must be positive")
    if log and low <= 0:
        raise SweepError(f"{where}: {distribution_name} needs min > 0")
    if log and step is not None and not (kind == "int" and step == 1):
        raise SweepError(f"{where}: Optuna cannot combine a log scale with a step")
    try:
        if kind == "int":
            distribution = IntDistribution(low, high, log=log, step=step or 1)
            grid = tuple(range(low, high + 1, step or 1))
        else:
            distribution = FloatDistribution(low, high, log=log, step=step)
            grid = _float_grid(low, high, step, log)
    except ValueError as error:
        raise SweepError(f"{where}: {error}") from error
    return Parameter(name, kind, distribution, grid, note)


def _float_grid(low: float, high: float, step: float | None, log: bool) -> tuple[float, ...]:
    import numpy as np

    if step is not None:
        count = int(math.floor((high - low) / step + 1e-9)) + 1
        # Rounded so that 0.1 + 2 * 0.1 is written as 0.3, as a person would.
        return tuple(float(f"{low + index * step:.12g}") for index in range(count))
    if low == high:
        return (low,)
    points = (np.geomspace if log else np.linspace)(low, high, GRID_POINTS_PER_DOUBLE)
    return tuple(float(f"{value:.12g}") for value in points)


def _containers(node: Any) -> list[dict]:
    """Every container in a trialSpec, whatever the job kind (Job, TFJob, PyTorchJob...)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "containers" and isinstance(value, list):
                found.extend(item for item in value if isinstance(item, dict))
            else:
                found.extend(_containers(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_containers(item))
    return found


def parse_experiment(document: dict, source: str = "experiment") -> Experiment:
    """Build an Experiment from a parsed Katib Experiment manifest.

    Args:
        document: the manifest as a dict (`apiVersion`, `kind`, `metadata`, `spec`).
        source: name used in error messages (usually the file path).

    Raises:
        SweepError: a field is missing, malformed, or cannot run locally.
    """
    spec = document.get("spec")
    if not isinstance(spec, dict):
        raise SweepError(f"{source}: no spec")
    metadata = document.get("metadata") or {}

    objective = spec.get("objective") or {}
    objective_metric = objective.get("objectiveMetricName")
    objective_type = objective.get("type")
    if not objective_metric or objective_type not in ("maximize", "minimize"):
        raise SweepError(f"{source}: spec.objective needs objectiveMetricName and type "
                         "maximize or minimize")
    strategies = {}
    for item in objective.get("metricStrategies") or []:
        if item.get("value") not in ("min", "max", "latest"):
            raise SweepError(f"{source}: metricStrategies {item.get('name')!r}: value must be "
                             "min, max or latest")
        strategies[item["name"]] = item["value"]
    goal = objective.get("goal")

    parameters = tuple(_parameter(item, source) for item in spec.get("parameters") or [])
    if not parameters:
        raise SweepError(f"{source}: spec.parameters is empty")
    names = [parameter.name for parameter in parameters]
    if len(set(names)) != len(names):
        raise SweepError(f"{source}: duplicate parameter names in {names}")

    algorithm_spec = spec.get("algorithm") or {}
    algorithm = algorithm_spec.get("algorithmName")
    if not algorithm:
        raise SweepError(f"{source}: spec.algorithm.algorithmName is missing")
    algorithm_settings = _settings(algorithm_spec.get("algorithmSettings"),
                                   f"{source}: spec.algorithm.algorithmSettings")

    early_stopping = None
    if spec.get("earlyStopping"):
        stopping = spec["earlyStopping"]
        if stopping.get("algorithmName") != "medianstop":
            raise SweepError(f"{source}: earlyStopping algorithm "
                             f"{stopping.get('algorithmName')!r} is not supported (Katib has "
                             "medianstop only)")
        settings = _settings(stopping.get("algorithmSettings"),
                             f"{source}: spec.earlyStopping.algorithmSettings")
        unknown = set(settings) - {"min_trials_required", "start_step"}
        if unknown:
            raise SweepError(f"{source}: unknown medianstop setting(s) {sorted(unknown)}")
        values = {key: _number(value, int, f"{source}: medianstop {key}")
                  for key, value in settings.items()}
        if any(value < 1 for value in values.values()):
            raise SweepError(f"{source}: medianstop settings must be at least 1")
        early_stopping = MedianStopSettings(**values)

    template = spec.get("trialTemplate") or {}
    if template.get("configMap"):
        raise SweepError(f"{source}: a trialTemplate from a ConfigMap cannot be read locally; "
                         "inline it as trialSpec")
    trial_spec = template.get("trialSpec")
    containers = _containers(trial_spec)
    primary = template.get("primaryContainerName")
    chosen = [item for item in containers if item.get("name") == primary] if primary \
        else containers
    if len(chosen) != 1:
        raise SweepError(f"{source}: cannot find the primary container "
                         f"{primary or '(primaryContainerName unset)'} in trialSpec")
    container = chosen[0]
    command = [str(item) for item in (container.get("command") or [])]
    command += [str(item) for item in (container.get("args") or [])]
    if not command:
        raise SweepError(f"{source}: the primary container has no command or args")
    env = {str(item["name"]): str(item["value"]) for item in container.get("env") or []
           if "value" in item}

    trial_parameters = {}
    for item in template.get("trialParameters") or []:
        name, reference = item.get("name"), item.get("reference")
        if not name or not reference:
            raise SweepError(f"{source}: each trialParameter needs name and reference")
        if reference not in names and not _META_REFERENCE.match(reference):
            raise SweepError(f"{source}: trialParameter {name!r} refers to {reference!r}, "
                             f"which is not a parameter ({names})")
        trial_parameters[name] = reference
    used = {match for text in [*command, *env.values()] for match in _PLACEHOLDER.findall(text)}
    undefined = sorted(used - set(trial_parameters))
    if undefined:
        raise SweepError(f"{source}: the trial command uses undefined trialParameters "
                         f"{undefined}")

    collector = spec.get("metricsCollectorSpec") or {}
    kind = (collector.get("collector") or {}).get("kind", "StdOut")
    if kind != "StdOut":
        raise SweepError(f"{source}: metrics collector {kind!r} cannot run locally; the local "
                         "sweep reads the trial's output as Katib's StdOut collector does")
    filters = (((collector.get("source") or {}).get("filter") or {}).get("metricsFormat")
               or [KATIB_METRICS_REGEX])
    for pattern in filters:
        try:
            if re.compile(pattern).groups < 2:
                raise SweepError(f"{source}: metricsFormat {pattern!r} needs two groups "
                                 "(name, value)")
        except re.error as error:
            raise SweepError(f"{source}: metricsFormat {pattern!r}: {error}") from error

    def count(key: str, default: int | None) -> int | None:
        value = spec.get(key, default)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise SweepError(f"{source}: spec.{key} must be a positive integer")
        return value

    return Experiment(
        name=str(metadata.get("name", "experiment")),
        parameters=parameters,
        objective_metric=objective_metric,
        objective_type=objective_type,
        goal=None if goal is None else float(goal),
        additional_metrics=tuple(objective.get("additionalMetricNames") or ()),
        metric_strategies=strategies,
        algorithm=algorithm,
        algorithm_settings=algorithm_settings,
        early_stopping=early_stopping,
        parallel_trials=count("parallelTrialCount", DEFAULT_PARALLEL_TRIALS),
        max_trials=count("maxTrialCount", None),
        max_failed_trials=count("maxFailedTrialCount", None),
        trial_parameters=trial_parameters,
        command=tuple(command),
        env=env,
        metric_filters=tuple(filters),
        trial_kind=str((trial_spec or {}).get("kind", "Job")),
        trial_api_version=str((trial_spec or {}).get("apiVersion", "batch/v1")),
        namespace=str(metadata.get("namespace", "default")),
    )


# --------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------

def _grid_sampler(search_space: dict, seed: int):
    """Optuna's GridSampler, usable with ask/tell.

    GridSampler calls `Study.stop()` once its grid is used up, which raises
    outside `study.optimize()`; the sweep caps its trial count at the grid
    size instead.
    """
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values):
            pass

    return AskTellGridSampler(search_space, seed=seed)


def resolve_seed(experiment: Experiment, seed: int | None) -> int:
    """The sampler seed: `seed`, else the algorithm's `random_state` setting, else 0."""
    if seed is not None:
        return seed
    value = experiment.algorithm_settings.get("random_state")
    return 0 if value is None else int(_number(value, int, "random_state"))


def make_sampler(experiment: Experiment, seed: int | None = None):
    """The Optuna sampler standing in for the Experiment's algorithm.

    Args:
        experiment: the parsed Experiment (algorithm name and settings).
        seed: sampler seed (see `resolve_seed`).

    Returns:
        (sampler, notes): the seeded sampler and lines explaining any
        approximation (empty when the mapping is exact).

    Raises:
        SweepError: an unsupported or unknown algorithm, an unknown setting,
            or a missing optional package.
    """
    import optuna

    name = experiment.algorithm
    if name in UNSUPPORTED_ALGORITHMS:
        raise SweepError(f"algorithm {name!r} cannot run as a local sweep: "
                         f"{UNSUPPORTED_ALGORITHMS[name]}; use one of {sorted(SAMPLERS)}")
    if name not in SAMPLERS:
        raise SweepError(f"unknown algorithm {name!r}; the local sweep knows {sorted(SAMPLERS)}")
    settings = experiment.algorithm_settings
    unknown = set(settings) - ALGORITHM_SETTINGS[name]
    if unknown:
        raise SweepError(f"algorithm {name}: unknown setting(s) {sorted(unknown)} (known: "
                         f"{sorted(ALGORITHM_SETTINGS[name])})")

    def integer(key: str) -> int | None:
        return _number(settings[key], int, f"algorithm {name} {key}") if key in settings \
            else None

    seed = resolve_seed(experiment, seed)
    notes = [note for note in [SAMPLERS[name][1]] if note]
    notes += [parameter.note for parameter in experiment.parameters if parameter.note]
    categorical = [parameter.name for parameter in experiment.parameters
                   if parameter.type in ("categorical", "discrete")]

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed), notes
    if name in ("tpe", "multivariate-tpe", "bayesianoptimization"):
        options = {"n_startup_trials": integer("n_startup_trials"),
                   "n_ei_candidates": integer("n_ei_candidates")}
        if name == "bayesianoptimization":
            options = {"n_startup_trials": integer("n_initial_points")}
        options = {key: value for key, value in options.items() if value is not None}
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=name == "multivariate-tpe" or None, **options), notes
    if name == "cmaes":
        if importlib.util.find_spec("cmaes") is None:
            raise SweepError("algorithm cmaes needs the `cmaes` package, which is not "
                             "installed (Optuna's CmaEsSampler imports it)")
        if categorical:
            notes.append(f"cmaes: categorical parameters {categorical} are sampled at random "
                         "(CMA-ES works on numbers only)")
        sigma = settings.get("sigma")
        return optuna.samplers.CmaEsSampler(
            seed=seed, sigma0=None if sigma is None else _number(sigma, float, "sigma"),
            restart_strategy=settings.get("restart_strategy") or None,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_independent_sampling=False), notes
    if name == "grid":
        steps = [parameter.name for parameter in experiment.parameters
                 if parameter.type == "double" and parameter.distribution.step is None]
        if steps:
            notes.append(f"grid: double parameters without a step {steps} are gridded at "
                         f"{GRID_POINTS_PER_DOUBLE} points from min to max")
        return _grid_sampler(
            {parameter.name: list(parameter.grid) for parameter in experiment.parameters},
            seed), notes
    # sobol: scrambled so that a different seed gives a different sequence.
    with warnings.catch_warnings():
        # QMCSampler is "experimental" since Optuna 3.0; the warning says nothing useful here.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.QMCSampler(
            qmc_type="sobol", scramble=True, seed=seed,
            independent_sampler=optuna.samplers.RandomSampler(seed),
            warn_independent_sampling=False), notes


def grid_size(experiment: Experiment) -> int:
    """Number of points of the full grid over every parameter."""
    return math.prod(len(parameter.grid) for parameter in experiment.parameters)


# --------------------------------------------------------------------------
# One trial's command and metrics
# --------------------------------------------------------------------------

def substitute(text: str, experiment: Experiment, values: dict[str, str],
               trial_name: str) -> str:
    """Replace `${trialParameters.x}` in `text` as Katib does.

    Args:
        text: one command argument (or environment value).
        experiment: gives trialParameters (placeholder name -> reference).
        values: parameter name -> the text to substitute.
        trial_name: the value of a `${trialSpec.Name}` reference.
    """
    meta = {"Name": trial_name, "Namespace": experiment.namespace,
            "Kind": experiment.trial_kind, "APIVersion": experiment.trial_api_version}

    def replace(match: re.Match) -> str:
        reference = experiment.trial_parameters[match.group(1)]
        meta_match = _META_REFERENCE.match(reference)
        return meta[meta_match.group(1)] if meta_match else values[reference]

    return _PLACEHOLDER.sub(replace, text)


def replace_flag(command: Sequence[str], flag: str, value: str) -> list[str]:
    """`flag=X` and `flag X` in `command` -> `flag=value` / `flag value`.

    Raises:
        SweepError: the command does not contain `flag`.
    """
    result, found, index = [], False, 0
    while index < len(command):
        token = command[index]
        if token == flag and index + 1 < len(command):
            result += [flag, value]
            found, index = True, index + 2
            continue
        if token.startswith(flag + "="):
            token, found = f"{flag}={value}", True
        result.append(token)
        index += 1
    if not found:
        raise SweepError(f"the trial command has no {flag} argument to point at the local "
                         f"folder: {' '.join(command)}")
    return result


def trial_command(experiment: Experiment, values: dict[str, str], data_dir: str | Path,
                  model_dir: str | Path, trial_name: str = "trial") -> list[str]:
    """The local argv of one trial.

    Placeholders are substituted, `--data-dir` is pointed at `data_dir` and
    `--output-dir` at `model_dir`; `rnn-classifier` runs as
    `python -m rnn_classifier.cli` and `python`/`python3` as this
    interpreter, so trials use the same environment as the sweep.

    Args:
        experiment: the parsed Experiment.
        values: parameter name -> the text to substitute.
        data_dir: the local data folder.
        model_dir: the trial's model folder.
        trial_name: substituted for `${trialSpec.Name}` references.
    """
    command = [substitute(token, experiment, values, trial_name) for token in experiment.command]
    command = replace_flag(command, "--data-dir", str(data_dir))
    command = replace_flag(command, "--output-dir", str(model_dir))
    if command[0] == "rnn-classifier":
        command = [sys.executable, "-m", "rnn_classifier.cli", *command[1:]]
    elif command[0] in ("python", "python3"):
        command = [sys.executable, *command[1:]]
    return command


def parse_metrics(line: str, metrics: Sequence[str],
                  filters: Sequence[str] = (KATIB_METRICS_REGEX,)) -> list[tuple[str, float]]:
    """The (name, value) pairs Katib's text collector would record from one line.

    Like Katib, lines that mention none of `metrics` are skipped, every
    filter match is taken, and only names in `metrics` are kept. A value
    Katib could not use (`nan` matches the regex as an empty string) is
    dropped.
    """
    if not any(name in line for name in metrics):
        return []
    found = []
    for pattern in filters:
        for match in re.finditer(pattern, line):
            name, value = match.group(1).strip(), match.group(2).strip()
            if name in metrics:
                try:
                    number = float(value)
                except ValueError:
                    continue
                if math.isfinite(number):
                    found.append((name, number))
    return found


def extract_metrics(observations: Sequence[tuple[int, str, float]],
                    experiment: Experiment) -> dict[str, float]:
    """Each metric's value for a trial, from its observations in output order.

    Args:
        observations: (line number, metric name, value) as `parse_metrics`
            found them, in order.
        experiment: gives the metrics and their strategies.

    Returns:
        metric name -> value. The objective follows its strategy (Katib's
        default: the objective type); an additional metric follows its
        explicit strategy if it has one, else it is read where the
        objective's value was: its last value on or before that line (see
        the module docstring). Metrics never reported are left out.
    """
    def pick(name: str) -> tuple[int, float] | None:
        values = [(line, value) for line, metric, value in observations if metric == name]
        if not values:
            return None
        strategy = experiment.strategy(name)
        if strategy == "latest":
            return values[-1]
        best = (max if strategy == "max" else min)(value for _, value in values)
        # The last of equal optima: our trainer's closing line repeats its
        # restored best epoch, and ties are broken there by validation loss.
        return [item for item in values if item[1] == best][-1]

    result = {}
    chosen = pick(experiment.objective_metric)
    if chosen is not None:
        result[experiment.objective_metric] = chosen[1]
    for name in experiment.additional_metrics:
        if name in experiment.metric_strategies or chosen is None:
            picked = pick(name)
        else:
            before = [(line, value) for line, metric, value in observations
                      if metric == name and line <= chosen[0]]
            picked = before[-1] if before else pick(name)
        if picked is not None:
            result[name] = picked[1]
    return result


# --------------------------------------------------------------------------
# Median stopping
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StopRule:
    """Stop a trial whose best objective so far is worse than `median`."""

    median: float
    start_step: int
    maximize: bool

    def should_stop(self, values: Sequence[float]) -> bool:
        """True when the rule fires for the objective values reported so far."""
        if len(values) < self.start_step:
            return False
        best = max(values) if self.maximize else min(values)
        return best < self.median if self.maximize else best > self.median


class MedianStop:
    """Katib's medianstop, as its service and metrics collector apply it.

    For every Succeeded trial, the mean of its first `start_step` objective
    values; once at least `min_trials_required` trials have succeeded, each
    NEW trial gets a rule with the median of those means (rules are fixed
    when a trial is created, as Katib's suggestion controller does). From
    its `start_step`-th report on, the trial is stopped as soon as its best
    objective so far is worse than that median. EarlyStopped trials do not
    feed the median. (Optuna's MedianPruner differs: it compares with the
    median of other trials' values at the same step.)
    """

    def __init__(self, settings: MedianStopSettings, maximize: bool):
        self.settings = settings
        self.maximize = maximize
        self.means: list[float] = []

    def add_succeeded(self, objective_values: Sequence[float]) -> None:
        """Record a Succeeded trial's objective values, in order."""
        first = list(objective_values)[:self.settings.start_step]
        if first:
            self.means.append(statistics.fmean(first))

    def rule(self) -> StopRule | None:
        """The rule for a trial created now, or None before enough trials succeeded."""
        if len(self.means) < self.settings.min_trials_required:
            return None
        return StopRule(statistics.median(self.means), self.settings.start_step, self.maximize)


# --------------------------------------------------------------------------
# Running trials
# --------------------------------------------------------------------------

@dataclasses.dataclass
class TrialRecord:
    """One trial's outcome: a row of trials.csv."""

    number: int
    parameters: dict[str, Any]
    status: str = "Running"
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    command: list[str] = dataclasses.field(default_factory=list)
    model_dir: str = ""
    message: str = ""


@dataclasses.dataclass
class SweepResult:
    """What a sweep produced."""

    trials: list[TrialRecord]
    best: TrialRecord | None
    stopped_because: str
    output_dir: Path


class _Runner:
    """Runs trial subprocesses and can kill every one it started."""

    def __init__(self):
        self.processes: dict[int, subprocess.Popen] = {}
        self.lock = threading.Lock()

    def run(self, number: int, command: list[str], env: dict[str, str], log_path: Path,
            experiment: Experiment, rule: StopRule | None,
            report: Callable[[float, int], None]) -> tuple[str, list, float, str]:
        """Run one trial to its end; returns (status, observations, seconds, message)."""
        started = time.monotonic()
        observations: list[tuple[int, str, float]] = []
        objective_values: list[float] = []
        tail: list[str] = []
        stopped = False
        try:
            # Own session: killing the trial kills its children too, and only them.
            process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, env=env, text=True,
                                       bufsize=1, start_new_session=True)
        except OSError as error:
            return FAILED, [], time.monotonic() - started, f"cannot start: {error}"
        with self.lock:
            self.processes[number] = process
        try:
            with log_path.open("w") as log:
                for line_number, line in enumerate(process.stdout):
                    log.write(line)
                    log.flush()
                    tail = (tail + [line.rstrip()])[-5:]
                    for name, value in parse_metrics(line, experiment.metrics,
                                                     experiment.metric_filters):
                        observations.append((line_number, name, value))
                        if name == experiment.objective_metric:
                            objective_values.append(value)
                            report(value, len(objective_values))
                    if not stopped and rule is not None and rule.should_stop(objective_values):
                        stopped = True
                        self.kill(number)
            returncode = process.wait()
        finally:
            with self.lock:
                self.processes.pop(number, None)
        seconds = time.monotonic() - started
        if stopped:
            best = max(objective_values) if rule.maximize else min(objective_values)
            return (EARLY_STOPPED, observations, seconds,
                    f"best {experiment.objective_metric}={best:.6g} after "
                    f"{len(objective_values)} reports, median {rule.median:.6g}")
        if returncode != 0:
            reason = f"killed by signal {-returncode}" if returncode < 0 \
                else f"exit status {returncode}"
            return FAILED, observations, seconds, reason + ": " + " | ".join(tail[-3:])
        if not objective_values:
            return (METRICS_UNAVAILABLE, observations, seconds,
                    f"no {experiment.objective_metric}=... line in the output")
        return SUCCEEDED, observations, seconds, ""

    def kill(self, number: int) -> None:
        """Terminate a trial's process group (then kill it if it lingers)."""
        with self.lock:
            process = self.processes.get(number)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill_all(self) -> None:
        """Kill every running trial."""
        with self.lock:
            numbers = list(self.processes)
        for number in numbers:
            self.kill(number)


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _csv_columns(experiment: Experiment) -> list[str]:
    return ["trial", "status", *[parameter.name for parameter in experiment.parameters],
            *experiment.metrics, "steps", "seconds", "message"]


def write_trials_csv(path: Path, experiment: Experiment, trials: Sequence[TrialRecord]) -> None:
    """Write trials.csv atomically, one row per finished trial in trial order."""
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(_csv_columns(experiment))
    for trial in sorted(trials, key=lambda item: item.number):
        writer.writerow([trial.number, trial.status,
                         *[trial.parameters[parameter.name] for parameter in experiment.parameters],
                         *[_format_number(trial.metrics.get(name)) for name in experiment.metrics],
                         trial.steps, f"{trial.seconds:.1f}", trial.message])
    _atomic_write(path, stream.getvalue())


def _format_number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def best_trial(experiment: Experiment, trials: Sequence[TrialRecord]) -> TrialRecord | None:
    """The Succeeded trial with the best objective (lowest number on ties), or None."""
    candidates = [trial for trial in trials if trial.status == SUCCEEDED
                  and experiment.objective_metric in trial.metrics]
    if not candidates:
        return None
    sign = -1.0 if experiment.maximize else 1.0
    return min(candidates,
               key=lambda trial: (sign * trial.metrics[experiment.objective_metric],
                                  trial.number))


def write_best_json(path: Path, experiment: Experiment, best: TrialRecord,
                    trials: Sequence[TrialRecord]) -> None:
    """Write best.json atomically: the best Succeeded trial and how it was chosen."""
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    _atomic_write(path, json.dumps({
        "experiment": experiment.name,
        "algorithm": experiment.algorithm,
        "objective": {"name": experiment.objective_metric, "type": experiment.objective_type,
                      "strategy": experiment.strategy(experiment.objective_metric),
                      "value": best.metrics[experiment.objective_metric]},
        "trial": best.number,
        "parameters": {parameter.name: parameter.typed(best.parameters[parameter.name])
                       for parameter in experiment.parameters},
        "metrics": best.metrics,
        "seconds": round(best.seconds, 1),
        "model_dir": best.model_dir,
        "command": best.command,
        "trials": counts,
    }, indent=2) + "\n")


def _short(value: str) -> str:
    """A sampled double as 4 significant digits for the progress lines (the CSV keeps all)."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if value.lstrip("-").isdigit() else f"{number:.4g}"


def _describe(parameters: dict[str, str]) -> str:
    return " ".join(f"{name}={_short(value)}" for name, value in parameters.items())


def summary_table(experiment: Experiment, trials: Sequence[TrialRecord],
                  best: TrialRecord | None) -> str:
    """A fixed-width table of every trial, the best marked with `*`."""
    header = ["", "trial", "status", *[p.name for p in experiment.parameters],
              *experiment.metrics, "seconds"]
    rows = [header]
    for trial in sorted(trials, key=lambda item: item.number):
        rows.append(["*" if best is not None and trial.number == best.number else "",
                     str(trial.number), trial.status,
                     *[_short(trial.parameters[p.name]) for p in experiment.parameters],
                     *[_format_number(trial.metrics.get(name)) for name in experiment.metrics],
                     f"{trial.seconds:.1f}"])
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def _child_env(experiment: Experiment, values: dict[str, str], trial_name: str,
               parallel: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({key: substitute(value, experiment, values, trial_name)
                for key, value in experiment.env.items()})
    # Trials print through a pipe: unbuffered output keeps the metric lines
    # (and the stop decisions taken on them) live.
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # On the cluster each trial pod has its own CPU limit; here P trials
    # share the machine, so each gets its share of threads instead of all
    # of them fighting over every core.
    threads = str(max(1, (os.cpu_count() or 1) // parallel))
    for key in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env.setdefault(key, threads)
    env.setdefault("TF_NUM_INTEROP_THREADS", "1" if parallel > 1 else threads)
    return env


def run_sweep(experiment: Experiment, data_dir: str | Path, output_dir: str | Path,
              max_trials: int | None = None, parallel: int | None = None,
              seed: int | None = None, log: Callable[[str], None] | None = None) -> SweepResult:
    """Run the Experiment's trials locally and write trials.csv and best.json.

    Args:
        experiment: the parsed Experiment.
        data_dir: local data folder, replacing the manifest's `--data-dir`.
        output_dir: where trials.csv, best.json and trials/<n>/ go; it must
            not already hold a sweep.
        max_trials: overrides spec.maxTrialCount.
        parallel: overrides spec.parallelTrialCount.
        seed: sampler seed (default: the algorithm's random_state, else 0).
        log: where progress lines go (default: stdout, flushed).

    Returns:
        SweepResult: every trial, the best Succeeded one (or None) and why
        the sweep stopped.

    Raises:
        SweepError: the Experiment or the arguments cannot be run.
    """
    import optuna

    print_lock = threading.Lock()

    def say(line: str) -> None:
        with print_lock:
            (log or (lambda text: print(text, flush=True)))(line)

    data_dir, output_dir = Path(data_dir).resolve(), Path(output_dir).resolve()
    if not data_dir.is_dir():
        raise SweepError(f"{data_dir}: data folder does not exist")
    if (output_dir / "trials.csv").exists() or (output_dir / "trials").exists():
        raise SweepError(f"{output_dir}: already holds a sweep; choose another --output-dir")
    max_trials = experiment.max_trials if max_trials is None else max_trials
    if max_trials is None:
        raise SweepError("the Experiment has no maxTrialCount; pass --max-trials")
    parallel = experiment.parallel_trials if parallel is None else parallel
    if max_trials < 1 or parallel < 1:
        raise SweepError("--max-trials and --parallel must be at least 1")
    sampler, notes = make_sampler(experiment, seed)
    if experiment.algorithm == "grid" and grid_size(experiment) < max_trials:
        notes.append(f"grid: {grid_size(experiment)} points, so {grid_size(experiment)} trials "
                     f"instead of {max_trials}")
        max_trials = grid_size(experiment)
    # Check the command before any trial runs: a typo would otherwise burn
    # maxFailedTrialCount trials to say the same thing.
    probe = trial_command(experiment, {p.name: p.format(p.grid[0]) for p in experiment.parameters},
                          data_dir, output_dir / "trials" / "0" / "model")
    if shutil.which(probe[0]) is None:
        raise SweepError(f"trial command {probe[0]!r} is not an executable on this machine")

    output_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=experiment.name, sampler=sampler,
        direction="maximize" if experiment.maximize else "minimize")
    distributions = {p.name: p.distribution for p in experiment.parameters}
    by_name = {p.name: p for p in experiment.parameters}
    median_stop = (MedianStop(experiment.early_stopping, experiment.maximize)
                   if experiment.early_stopping else None)
    stopping = ""
    if experiment.early_stopping:
        stopping = (f"; early stopping medianstop(min_trials_required="
                    f"{experiment.early_stopping.min_trials_required}, start_step="
                    f"{experiment.early_stopping.start_step})")
    say(f"sweep {experiment.name}: {experiment.algorithm} -> {SAMPLERS[experiment.algorithm][0]}"
        f" (seed {resolve_seed(experiment, seed)}), {max_trials} trials, {parallel} at a time; "
        f"{experiment.objective_type} {experiment.objective_metric} (strategy "
        f"{experiment.strategy(experiment.objective_metric)}){stopping}")
    for note in notes:
        say(f"note: {note}")

    runner = _Runner()
    finished: list[TrialRecord] = []
    failures = 0
    stopped_because = f"{max_trials} trials run"
    sweep_started = time.monotonic()

    def launch(pool: ThreadPoolExecutor) -> tuple[Future, Any, TrialRecord]:
        trial = study.ask(fixed_distributions=distributions)
        values = {name: by_name[name].format(value) for name, value in trial.params.items()}
        trial_dir = output_dir / "trials" / str(trial.number)
        trial_dir.mkdir(parents=True)
        trial_name = f"{experiment.name}-{trial.number}"
        record = TrialRecord(trial.number, values, model_dir=str(trial_dir / "model"))
        record.command = trial_command(experiment, values, data_dir, trial_dir / "model",
                                       trial_name)
        rule = median_stop.rule() if median_stop else None
        env = _child_env(experiment, values, trial_name, parallel)
        say(f"[trial {trial.number}] started  {_describe(values)}"
            + (f"  (stop below median {rule.median:.4g} from step {rule.start_step})"
               if rule else ""))
        future = pool.submit(runner.run, trial.number, record.command, env,
                             trial_dir / "trial.log", experiment, rule, trial.report)
        return future, trial, record

    running: dict[Future, tuple[Any, TrialRecord]] = {}
    launched = 0
    best: TrialRecord | None = None
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="trial") as pool:
        try:
            while True:
                # Once maxFailedTrialCount or the goal is reached nothing new
                # starts, but running trials finish: their results are paid for.
                while (len(running) < parallel and launched < max_trials
                       and not _over(failures, experiment.max_failed_trials)
                       and not _goal_reached(experiment, best)):
                    future, trial, record = launch(pool)
                    running[future] = (trial, record)
                    launched += 1
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda item: running[item][1].number):
                    trial, record = running.pop(future)
                    status, observations, seconds, message = future.result()
                    objective_values = [value for _, name, value in observations
                                        if name == experiment.objective_metric]
                    record.status, record.seconds, record.message = status, seconds, message
                    record.metrics = extract_metrics(observations, experiment)
                    record.steps = len(objective_values)
                    if status == SUCCEEDED:
                        study.tell(trial, record.metrics[experiment.objective_metric])
                        if median_stop:
                            median_stop.add_succeeded(objective_values)
                    elif status == EARLY_STOPPED:
                        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    else:
                        failures += 1
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    finished.append(record)
                    best = best_trial(experiment, finished)
                    write_trials_csv(output_dir / "trials.csv", experiment, finished)
                    if best is not None:
                        write_best_json(output_dir / "best.json", experiment, best, finished)
                    objective = record.metrics.get(experiment.objective_metric)
                    say(f"[trial {record.number}] {status:<12} "
                        f"{experiment.objective_metric}={_format_number(objective) or '-'} "
                        f"in {seconds:.1f} s  [{len(finished)}/{max_trials} done"
                        + (f", best {best.metrics[experiment.objective_metric]:.4f} "
                           f"(trial {best.number})" if best else "") + "]"
                        + (f"  {message}" if message else ""))
        except BaseException:
            # Ctrl-C or a bug: no trial may outlive the sweep.
            runner.kill_all()
            for trial, record in running.values():
                record.status, record.message = KILLED, "sweep interrupted"
                finished.append(record)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            write_trials_csv(output_dir / "trials.csv", experiment, finished)
            raise
    if _over(failures, experiment.max_failed_trials):
        stopped_because = (f"{failures} failed trials reached maxFailedTrialCount "
                           f"{experiment.max_failed_trials}")
    elif _goal_reached(experiment, best):
        stopped_because = f"goal {experiment.objective_metric}={experiment.goal:g} reached"
    say(summary_table(experiment, finished, best))
    say(f"sweep finished in {time.monotonic() - sweep_started:.0f} s: {stopped_because}; "
        + (f"best trial {best.number} {experiment.objective_metric}="
           f"{best.metrics[experiment.objective_metric]:.6g}" if best
           else "no trial succeeded") + f"; wrote {output_dir / 'trials.csv'}"
        + (f" and {output_dir / 'best.json'}" if best else ""))
    return SweepResult(finished, best, stopped_because, output_dir)


def _over(failures: int, limit: int | None) -> bool:
    return limit is not None and failures >= limit


def _goal_reached(experiment: Experiment, best: TrialRecord | None) -> bool:
    if experiment.goal is None or best is None:
        return False
    value = best.metrics[experiment.objective_metric]
    return value >= experiment.goal if experiment.maximize else value <= experiment.goal
