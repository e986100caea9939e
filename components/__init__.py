"""KFP components: thin definitions over `rnn_classifier.steps`, one image for all.

Each module here holds one component function (typed signature, docstring
shown in the KFP UI, one call into the package). `build_components(image)`
turns them into KFP components on the project image, so the image is chosen
at compile time (`make compile IMAGE=...`) without reading the environment
at import. Only kfp is imported at module level: compiling needs no
TensorFlow.
"""

from __future__ import annotations

import textwrap
from types import SimpleNamespace

from kfp import dsl

from components.check_drift import check_drift
from components.compare import compare
from components.evaluate import evaluate
from components.fingerprint_data import fingerprint_data
from components.ingest import ingest
from components.promote import promote, record_decision
from components.publish_model import publish_model
from components.train import train
from components.tune import tune
from components.validate_data import validate_data

# The one image constant (docker/Dockerfile builds it; `make push` publishes it).
DEFAULT_IMAGE = "ghcr.io/goto-survey/rnn-classifier:0.1.0"


def field_args_doc(indent: str) -> dict[str, list[str]]:
    """Google-style `Args:` entry of every TrainConfig field, from its help text.

    KFP shows a docstring's `Args:` as each input's description in the UI; the
    help text lives once, beside the field's default (rnn_classifier.config).
    """
    from rnn_classifier.config import DEFAULTS, field_metadata, field_names

    entries = {}
    for name in field_names():
        meta = field_metadata(name)
        text = f"{name}: {meta['help']}"
        if meta["choices"]:
            text += f" (one of {', '.join(map(str, meta['choices']))})"
        text += f". Default: {getattr(DEFAULTS, name)!r}."
        entries[name] = textwrap.wrap(text, 96 - len(indent), initial_indent=indent,
                                      subsequent_indent=indent + "    ")
    return entries


def document_fields(function):
    """`function`, its docstring's `Args:` given an entry for each TrainConfig field it takes.

    Fields the docstring already documents keep their own text; calling it
    again changes nothing.
    """
    lines = function.__doc__.splitlines()
    start = next(index for index, line in enumerate(lines) if line.strip() == "Args:")
    indent = lines[start][:len(lines[start]) - len(lines[start].lstrip())] + "    "
    documented = {line.strip().split(":")[0] for line in lines[start + 1:]
                  if line.startswith(indent) and not line.startswith(indent + " ")}
    parameters = function.__code__.co_varnames[:function.__code__.co_argcount]
    entries = field_args_doc(indent)
    added = [line for name in parameters if name in entries and name not in documented
             for line in entries[name]]
    function.__doc__ = "\n".join([*lines[:start + 1], *added, *lines[start + 1:]])
    return function


def build_components(image: str = DEFAULT_IMAGE) -> SimpleNamespace:
    """The pipeline's components, each running `image`.

    The image already holds the package and the same kfp version, so no
    package is installed at run time.
    """
    return SimpleNamespace(**{
        function.__name__: dsl.component(document_fields(function), base_image=image,
                                         install_kfp_package=False)
        for function in (fingerprint_data, validate_data, tune, train, evaluate, ingest,
                         check_drift, compare, publish_model, promote, record_decision)})
