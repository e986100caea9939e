"""THE hyperparameter search space, and what the sweep optimises: defined once, here.

`SEARCH_SPACE` drives the Katib Experiment (`rnn_classifier.katib`,
`manifests/katib/experiment.yaml`) and the local sweep that reads that
manifest. Every parameter name IS a `TrainConfig` field name: Katib's
parameter, the trial parameter and the config field share one name, and the
trial passes it as that field's `train` flag (`rnn_units` -> `--rnn-units`).
`check_against_config()` proves the space fits the config: known field,
matching type, categorical values among the field's choices, ranges inside
the field's minimum/maximum. The builder calls it and the tests call it.

Katib types: `double` and `int` take min/max (strings in the manifest),
optionally `logUniform`; `discrete` (numbers) and `categorical` (strings)
take a list. Katib has no conditional parameters, so `gamma` is also drawn
for the cross-entropy losses, where the trainer ignores it.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from typing import Any

from rnn_classifier import config as config_module
from rnn_classifier.cli import FALSE_WORDS, TRUE_WORDS

PARAMETER_TYPES = ("double", "int", "discrete", "categorical")
LOG_UNIFORM = "logUniform"

# What the sweep optimises. The trainer prints all three on every epoch line
# (rnn_classifier.train.HISTORY_KEYS); Katib's validator checks that too.
OBJECTIVE_METRIC = "val_macro_auc"
OBJECTIVE_TYPE = "maximize"
ADDITIONAL_METRICS = ("val_macro_f1", "val_loss")
# None: run maxTrialCount trials. A number stops the Experiment once a trial reaches it.
OBJECTIVE_GOAL: float | None = None

DEFAULT_ALGORITHM = "tpe"
DEFAULT_PARALLEL_TRIALS = 2
DEFAULT_MAX_TRIALS = 16
DEFAULT_MAX_FAILED_TRIALS = 3

# Median stopping: a trial whose running average of the objective over its first
# `start_step` reports is below the median of finished trials' is stopped. 5 epochs
# because the first two or three epochs of a focal-loss run say little.
EARLY_STOPPING_ALGORITHM = "medianstop"
EARLY_STOPPING_SETTINGS = (("min_trials_required", "3"), ("start_step", "5"))


class SearchSpaceError(config_module.ConfigError):
    """A search-space parameter that does not fit `TrainConfig` or Katib."""


@dataclasses.dataclass(frozen=True)
class SearchParameter:
    """One searched `TrainConfig` field and its Katib feasible space.

    Attributes:
        name: the TrainConfig field (also the Katib parameter and trial-parameter name).
        parameter_type: Katib parameterType: double, int, discrete or categorical.
        min: lower bound (double, int).
        max: upper bound (double, int).
        values: the list (discrete: numbers; categorical: strings).
        log: sample min..max log-uniformly (Katib `distribution: logUniform`).
        grid: values for Katib's `grid` algorithm, which cannot enumerate a
            continuous range: with `grid` a double/int parameter is emitted as
            `discrete` over these values.
    """

    name: str
    parameter_type: str
    min: float | int | None = None
    max: float | int | None = None
    values: tuple = ()
    log: bool = False
    grid: tuple = ()

    @property
    def is_range(self) -> bool:
        """True for double/int (min..max), False for discrete/categorical (a list)."""
        return self.parameter_type in ("double", "int")

    def to_katib(self, algorithm: str = DEFAULT_ALGORITHM) -> dict[str, Any]:
        """The `spec.parameters` entry of a Katib Experiment.

        Args:
            algorithm: Katib algorithm name; `grid` turns ranges into `discrete` lists.

        Returns:
            `{"name", "parameterType", "feasibleSpace"}` with every value a string,
            as Katib's API requires.
        """
        if self.is_range and algorithm == "grid":
            return {"name": self.name, "parameterType": "discrete",
                    "feasibleSpace": {"list": [katib_value(v) for v in self.grid]}}
        if self.is_range:
            space = {"min": katib_value(self.min), "max": katib_value(self.max)}
            if self.log:
                space["distribution"] = LOG_UNIFORM
        else:
            space = {"list": [katib_value(v) for v in self.values]}
        return {"name": self.name, "parameterType": self.parameter_type, "feasibleSpace": space}

    @classmethod
    def from_katib(cls, entry: dict[str, Any]) -> SearchParameter:
        """Parse a `spec.parameters` entry back (the local sweep reads the manifest so).

        Numbers are parsed as the config field's type when the name is a
        field (int for int fields, float otherwise).

        Raises:
            SearchSpaceError: a value that is not a number where one is needed.
        """
        name = entry.get("name", "")
        kind = entry.get("parameterType", "")
        space = entry.get("feasibleSpace") or {}
        number = int if (kind == "int" or _field_type(name) is int) else float

        def parse(text: Any, where: str) -> float | int:
            try:
                return number(text)
            except (TypeError, ValueError):
                raise SearchSpaceError(f"{where}: {text!r} is not a valid "
                                       f"{number.__name__}") from None

        if kind in ("double", "int"):
            return cls(name, kind, parse(space.get("min"), "feasibleSpace.min"),
                       parse(space.get("max"), "feasibleSpace.max"),
                       log=space.get("distribution") == LOG_UNIFORM)
        values = tuple(space.get("list") or ())
        if kind == "discrete":
            values = tuple(parse(v, f"feasibleSpace.list[{i}]") for i, v in enumerate(values))
        return cls(name, kind, values=values)

    def parse_value(self, text: str) -> Any:
        """Katib's substituted string -> the config field's Python value."""
        kind = config_module.field_type(self.name)
        if kind is bool:
            return text.lower() in TRUE_WORDS
        return kind(float(text)) if kind is int and "." in text else kind(text)

    def problems(self) -> list[tuple[str, str]]:
        """Every way this parameter does not fit TrainConfig or Katib.

        Returns:
            `(where, message)` pairs, `where` relative to the `spec.parameters`
            entry (`name`, `parameterType`, `feasibleSpace.max`...); empty when fine.
        """
        if self.name not in config_module.field_names():
            return [("name", f"{self.name!r} is not a TrainConfig field; known fields: "
                             f"{', '.join(config_module.field_names())}")]
        if self.parameter_type not in PARAMETER_TYPES:
            return [("parameterType", f"{self.parameter_type!r} is not one of "
                                      f"{', '.join(PARAMETER_TYPES)}")]
        kind = config_module.field_type(self.name)
        allowed = _KATIB_TYPES[kind]
        if self.parameter_type not in allowed:
            return [("parameterType", f"{self.parameter_type} does not fit config field "
                                      f"{self.name} ({kind.__name__}); use "
                                      f"{' or '.join(allowed)}")]
        if self.is_range:
            found = [*self._number_problems(self.min, "feasibleSpace.min", kind),
                     *self._number_problems(self.max, "feasibleSpace.max", kind)]
            if not found and self.min >= self.max:
                found.append(("feasibleSpace.min", f"min {self.min} must be below max "
                                                   f"{self.max}"))
            if not found and self.log and self.min <= 0:
                found.append(("feasibleSpace.min", f"{LOG_UNIFORM} needs min > 0, got "
                                                   f"{self.min}"))
            for i, value in enumerate(self.grid):
                found += self._number_problems(value, f"grid[{i}]", kind)
            return found
        if not self.values:
            return [("feasibleSpace.list", "must list at least one value")]
        if len(set(self.values)) != len(self.values):
            return [("feasibleSpace.list", f"{list(self.values)} repeats a value")]
        found = []
        for i, value in enumerate(self.values):
            where = f"feasibleSpace.list[{i}]"
            if self.parameter_type == "discrete":
                found += self._number_problems(value, where, kind)
            else:
                found += self._choice_problems(value, where, kind)
        return found

    def _number_problems(self, value: Any, where: str, kind: type) -> list[tuple[str, str]]:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (kind is int and not float(value).is_integer()):
            return [(where, f"{value!r} is not a valid {kind.__name__} for {self.name}")]
        if not math.isfinite(value):
            return [(where, f"{value!r} is not finite")]
        meta = config_module.field_metadata(self.name)
        if meta["minimum"] is not None and value < meta["minimum"]:
            return [(where, f"{value} is below {self.name}'s config minimum {meta['minimum']}")]
        if meta["maximum"] is not None and value > meta["maximum"]:
            return [(where, f"{value} is above {self.name}'s config maximum {meta['maximum']}")]
        return []

    def _choice_problems(self, value: Any, where: str, kind: type) -> list[tuple[str, str]]:
        if kind is bool:
            words = TRUE_WORDS | FALSE_WORDS
            if not isinstance(value, str) or value.lower() not in words:
                return [(where, f"{value!r} is not a boolean word ({', '.join(sorted(words))})")]
            return []
        choices = config_module.field_metadata(self.name)["choices"]
        if choices and value not in choices:
            return [(where, f"{value!r} is not one of {self.name}'s choices "
                            f"{', '.join(choices)}")]
        return []


# Katib parameterType(s) that can carry each config field type.
_KATIB_TYPES = {float: ("double", "discrete"), int: ("int", "discrete"),
                str: ("categorical",), bool: ("categorical",)}

SEARCH_SPACE: tuple[SearchParameter, ...] = (
    SearchParameter("learning_rate", "double", 1e-4, 1e-2, log=True, grid=(3e-4, 1e-3, 3e-3)),
    SearchParameter("rnn_units", "int", 16, 128, grid=(16, 32, 64)),
    SearchParameter("dropout", "double", 0.0, 0.5, grid=(0.0, 0.2, 0.4)),
    SearchParameter("l2", "double", 1e-6, 1e-3, log=True, grid=(1e-5, 1e-4)),
    SearchParameter("gamma", "double", 0.5, 5.0, grid=(1.0, 2.0, 3.0)),
    # Powers of two: batch sizes in between buy nothing on a GPU.
    SearchParameter("batch_size", "discrete", values=(32, 64, 128, 256)),
    SearchParameter("rnn_type", "categorical", values=("gru", "lstm")),
    SearchParameter("loss", "categorical", values=("logit_adjusted", "focal", "wce", "ce")),
)


def katib_value(value: Any) -> str:
    """A number or word as Katib's API spells it (every feasible-space value is a string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # Positional (0.000001, not 1e-06): PyYAML writes `1e-06` unquoted, and YAML 1.2
        # readers (kubectl's) take it for a number where Katib's API wants a string.
        return format(decimal.Decimal(repr(value)), "f")
    return str(value)


def search_space_problems(parameters: tuple[SearchParameter, ...] = SEARCH_SPACE) -> list[str]:
    """Every problem of a search space, each as `parameter NAME: where: message`."""
    found = []
    names = [parameter.name for parameter in parameters]
    for name in sorted({name for name in names if names.count(name) > 1}):
        found.append(f"parameter {name}: name: appears {names.count(name)} times")
    for parameter in parameters:
        found += [f"parameter {parameter.name}: {where}: {message}"
                  for where, message in parameter.problems()]
    return found


def check_against_config(parameters: tuple[SearchParameter, ...] = SEARCH_SPACE) -> None:
    """Raise SearchSpaceError naming every parameter that does not fit TrainConfig.

    Checks that each name is a config field, that its Katib type fits the
    field type, that categorical values are among the field's choices, and
    that ranges (and grid or discrete values) lie within the field's
    minimum/maximum, with min < max and min > 0 for log scales.

    Raises:
        SearchSpaceError: one message listing every problem.
    """
    found = search_space_problems(parameters)
    if found:
        raise SearchSpaceError("search space does not fit TrainConfig: " + "; ".join(found))


def _field_type(name: str) -> type | None:
    return config_module.field_type(name) if name in config_module.field_names() else None
