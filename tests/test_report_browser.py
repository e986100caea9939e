"""report.html as a reader sees it: opened in headless Chromium.

test_evaluate.py checks the HTML text; these tests check what a browser makes
of it: every embedded PNG decodes, the paper's two headline figures (the
confusion matrix and AUC against number of observations) are on the page at a
readable size, nothing widens the page past the window, and a full-page
screenshot shows a drawn report, not a blank page.

Needs the Debian packages chromium and chromium-driver; without them these
tests skip locally and fail in CI (CI=true), which installs them.
"""

import numpy as np
import pytest
from matplotlib.image import imread

from rnn_classifier import evaluate
from tests.browser import MAX_WINDOW_HEIGHT, render_page, require_chromium

CLASS_NAMES = ["VS", "SN", "AGN"]
TITLE = "GOTO survey: GRU, focal loss"
MASK = -99.0
MAX_STEPS = 15
WIDE, NARROW = 1280, 480


def imbalanced_predictions(seed: int, n_examples: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Labels ~ 80/15/5 % and probabilities that favour the true class."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(CLASS_NAMES), size=n_examples, p=[0.8, 0.15, 0.05])
    logits = rng.normal(size=(n_examples, len(CLASS_NAMES))) + 2.0 * np.eye(3)[labels]
    return labels, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


class EarlyClassifier:
    """Grows more confident in the true class the more observations it sees.

    Stands in for a trained model in ``auc_vs_observations``, so the figure
    shows the paper's shape: AUC rising and levelling off after ~10 points.
    """

    def __init__(self, labels: np.ndarray, seed: int = 0):
        self.labels = labels
        self.noise = np.random.default_rng(seed).normal(size=(len(labels), len(CLASS_NAMES)))

    def __call__(self, time_features: np.ndarray, contextual_features: None) -> np.ndarray:
        seen = (~np.all(time_features == MASK, axis=-1)).sum(axis=1)
        signal = 3.0 * (1.0 - np.exp(-seen / 4.0))
        logits = self.noise + signal[:, None] * np.eye(len(CLASS_NAMES))[self.labels]
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def light_curves(n_curves: int, seed: int = 0) -> np.ndarray:
    """(N, MAX_STEPS, 2) curves of 1..MAX_STEPS observations, padded with MASK."""
    rng = np.random.default_rng(seed)
    curves = np.full((n_curves, MAX_STEPS, 2), MASK)
    for row, length in enumerate(rng.integers(1, MAX_STEPS + 1, size=n_curves)):
        curves[row, :length] = rng.normal(18.0, 1.0, size=(length, 2))
    return curves


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    require_chromium()
    output_dir = tmp_path_factory.mktemp("browser_report")
    y_test, proba_test = imbalanced_predictions(2)
    auc_curve = evaluate.auc_vs_observations(
        EarlyClassifier(y_test),
        light_curves(len(y_test)),
        None,
        y_test,
        CLASS_NAMES,
        mask_value=MASK,
    )
    evaluate.evaluate_predictions(
        output_dir,
        {"validation": imbalanced_predictions(1), "test": (y_test, proba_test)},
        CLASS_NAMES,
        auc_curve,
        config={"model": {"rnn": "gru", "units": 64}, "loss": {"name": "focal", "gamma": 2.0}},
        title=TITLE,
    )
    return output_dir / "report.html"


@pytest.fixture(scope="module")
def page(report):
    return render_page(report, report.parent / "screenshot_wide.png", width=WIDE)


@pytest.fixture(scope="module")
def narrow_page(report):
    return render_page(report, report.parent / "screenshot_narrow.png", width=NARROW)


def test_every_image_loads(page):
    assert len(page.images) == 6
    broken = [image.alt for image in page.images if not image.loaded]
    assert not broken, f"images that did not decode in Chromium: {broken}"


def test_headline_figures_are_shown_under_their_headings(page):
    by_alt = {image.alt: image for image in page.images}
    for split in ("validation", "test"):
        confusion = by_alt[f"confusion_matrix_{split}"]
        assert confusion.heading == split.capitalize()
        assert confusion.caption.startswith("Confusion matrix")
    auc = by_alt["auc_vs_observations"]
    assert auc.heading == "Early classification"
    assert "number of observations" in auc.caption
    for image in (by_alt["confusion_matrix_test"], auc):
        # Shown at (about) its own size, not squashed into a thumbnail.
        assert image.width >= 0.9 * image.natural_width >= 300
        assert image.right <= page.viewport_width


def test_visible_text(page):
    assert page.title == TITLE
    assert page.text.startswith(TITLE)
    for name in CLASS_NAMES:
        assert f"\n{name}\t" in page.text, f"class {name} missing from the tables"
    for words in ("Macro ROC-AUC", "AUC", "Early classification", "Configuration", '"focal"'):
        assert words in page.text


def test_nothing_widens_the_page(page, narrow_page):
    for facts in (page, narrow_page):
        assert not facts.overflowing, f"wider than {facts.viewport_width}px: {facts.overflowing}"
        assert facts.scroll_width <= facts.viewport_width


def test_images_scale_down_in_a_narrow_window(narrow_page):
    assert narrow_page.viewport_width == NARROW
    for image in narrow_page.images:
        assert image.loaded
        assert image.right <= NARROW
        # Scaled, not cropped: the aspect ratio is kept.
        assert image.width / image.height == pytest.approx(
            image.natural_width / image.natural_height, rel=0.03
        )


def test_screenshot_shows_the_whole_drawn_report(page):
    pixels = imread(page.screenshot)
    height, width = pixels.shape[:2]
    assert width == WIDE
    assert height == min(page.scroll_height, MAX_WINDOW_HEIGHT)
    # Six figures and four tables make a long page; a blank or half-rendered
    # one is short, or white almost everywhere.
    assert page.scroll_height > 3000
    rgb = np.round(pixels[..., :3] * 255).astype(np.int64).reshape(-1, 3)
    distinct_colours = np.count_nonzero(np.bincount(rgb @ [1 << 16, 1 << 8, 1]))
    assert distinct_colours > 500, f"{page.screenshot} has {distinct_colours} colours"
    assert rgb.std() > 20, f"{page.screenshot} is nearly uniform"
    not_white = np.any(rgb < 240, axis=1).mean()
    assert not_white > 0.05, f"{page.screenshot}: only {not_white:.1%} of pixels are drawn"
