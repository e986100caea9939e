"""KFP components: thin definitions over `rnn_classifier.steps`, one image for all.

Each module here holds one component function (typed signature, docstring
shown in the KFP UI, one call into the package). `build_components(image)`
turns them into KFP components on the project image, so the image is chosen
at compile time (`make compile IMAGE=...`) without reading the environment
at import. Only kfp is imported at module level: compiling needs no
TensorFlow.
"""

from __future__ import annotations

from types import SimpleNamespace

from kfp import dsl

from components.check_drift import check_drift
from components.compare import compare
from components.evaluate import evaluate
from components.ingest import ingest
from components.promote import promote, record_decision
from components.publish_model import publish_model
from components.train import train
from components.tune import tune
from components.validate_data import validate_data

# The one image constant (docker/Dockerfile builds it; `make push` publishes it).
DEFAULT_IMAGE = "ghcr.io/goto-survey/rnn-classifier:0.1.0"


def build_components(image: str = DEFAULT_IMAGE) -> SimpleNamespace:
    """The pipeline's components, each running `image`.

    The image already holds the package and the same kfp version, so no
    package is installed at run time.
    """
    return SimpleNamespace(**{
        function.__name__: dsl.component(function, base_image=image,
                                         install_kfp_package=False)
        for function in (validate_data, tune, train, evaluate, ingest, check_drift, compare,
                         publish_model, promote, record_decision)})
