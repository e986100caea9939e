"""Tests for rnn_classifier.evaluate: metrics by hand, early classification, figures, report."""

import base64
import json
import math
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.image import imread
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from rnn_classifier import evaluate

MASK = -99.0
SPLIT_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "macro_roc_auc",
    "ece",
    "per_class",
    "confusion_matrix",
    "roc_curves",
    "pr_curves",
    "reliability",
}
PER_CLASS_KEYS = {"precision", "recall", "f1", "roc_auc", "pr_auc", "support"}


def probabilities_predicting(predicted: list[int], n_classes: int) -> np.ndarray:
    """Probabilities whose argmax is `predicted`, with varied confidences so AUCs are defined."""
    rows = []
    for index, label in enumerate(predicted):
        row = np.full(n_classes, 0.1 / (n_classes - 1))
        row[label] = 0.6 + 0.05 * index % 0.3
        rows.append(row / row.sum())
    return np.array(rows)


def strict_json(metrics: dict) -> dict:
    """Round-trips through JSON refusing NaN/inf, as KFP does."""
    return json.loads(json.dumps(metrics, allow_nan=False))


# --------------------------------------------------------------------------
# classification_metrics
# --------------------------------------------------------------------------


class TestHandComputedMetrics:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = [0, 0, 1, 1, 2, 2]
    names = ["VS", "SN", "AGN"]

    @pytest.fixture()
    def metrics(self):
        proba = probabilities_predicting(self.y_pred, 3)
        assert list(proba.argmax(axis=1)) == self.y_pred
        return evaluate.classification_metrics(self.y_true, proba, self.names)

    def test_headline_scores(self, metrics):
        assert metrics["accuracy"] == pytest.approx(4 / 6)
        # recalls 2/3, 1/2, 1/1
        assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
        # F1 = 2TP / (2TP + FP + FN): 4/5, 2/4, 2/3
        assert metrics["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
        assert metrics["macro_f1"] == pytest.approx(
            f1_score(self.y_true, self.y_pred, average="macro")
        )
        assert metrics["balanced_accuracy"] == pytest.approx(
            balanced_accuracy_score(self.y_true, self.y_pred)
        )
        assert metrics["n_examples"] == 6

    def test_per_class_by_hand(self, metrics):
        per_class = metrics["per_class"]
        assert list(per_class) == self.names
        assert per_class["VS"]["precision"] == 1.0
        assert per_class["VS"]["recall"] == pytest.approx(2 / 3)
        assert per_class["VS"]["f1"] == pytest.approx(0.8)
        assert per_class["SN"]["precision"] == pytest.approx(1 / 2)
        assert per_class["SN"]["recall"] == pytest.approx(1 / 2)
        assert per_class["AGN"]["precision"] == pytest.approx(1 / 2)
        assert per_class["AGN"]["recall"] == 1.0
        assert [per_class[name]["support"] for name in self.names] == [3, 2, 1]
        for scores in per_class.values():
            assert set(scores) == PER_CLASS_KEYS

    def test_confusion_matrix(self, metrics):
        confusion = metrics["confusion_matrix"]
        assert confusion["labels"] == self.names
        assert confusion["counts"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
        assert np.allclose(
            confusion["normalized"], [[2 / 3, 1 / 3, 0], [0, 1 / 2, 1 / 2], [0, 0, 1]]
        )

    def test_all_keys_present_and_json_strict(self, metrics):
        assert SPLIT_KEYS <= set(metrics)
        assert strict_json(metrics) == metrics

    def test_one_hot_labels_give_the_same_result(self, metrics):
        proba = probabilities_predicting(self.y_pred, 3)
        one_hot = np.eye(3)[self.y_true]
        assert evaluate.classification_metrics(one_hot, proba, self.names) == metrics


def test_class_absent_from_labels_is_none_not_nan():
    y_true = np.array([0, 0, 1, 1])
    y_pred = [0, 2, 1, 1]  # class 2 predicted once but never true
    proba = probabilities_predicting(y_pred, 3)
    metrics = evaluate.classification_metrics(y_true, proba, ["a", "b", "c"])

    absent = metrics["per_class"]["c"]
    assert absent["support"] == 0
    assert absent["recall"] is None
    assert absent["roc_auc"] is None
    assert absent["pr_auc"] is None
    assert absent["precision"] == 0.0  # predicted once, wrongly
    assert absent["f1"] == 0.0
    assert metrics["roc_curves"]["c"] is None
    assert metrics["pr_curves"]["c"] is None
    # The empty row is zeros, not 0/0.
    assert metrics["confusion_matrix"]["counts"][2] == [0, 0, 0]
    assert metrics["confusion_matrix"]["normalized"][2] == [0.0, 0.0, 0.0]
    # Balanced accuracy averages the recall of the classes present: (1/2 + 1) / 2.
    assert metrics["balanced_accuracy"] == pytest.approx(0.75)
    # sklearn's macro F1 averages over classes in labels or predictions: (2/3 + 1 + 0) / 3.
    assert metrics["macro_f1"] == pytest.approx(5 / 9)
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    # Macro AUC over the classes where it is defined.
    assert metrics["macro_roc_auc"] == pytest.approx(
        np.mean([metrics["per_class"][k]["roc_auc"] for k in ("a", "b")])
    )
    json.dumps(metrics, allow_nan=False)


def test_class_never_predicted_has_undefined_precision():
    y_true = np.array([0, 1, 2, 2])
    proba = probabilities_predicting([0, 1, 1, 1], 3)
    metrics = evaluate.classification_metrics(y_true, proba, ["a", "b", "c"])
    assert metrics["per_class"]["c"]["precision"] is None
    assert metrics["per_class"]["c"]["recall"] == 0.0
    assert metrics["per_class"]["c"]["f1"] == 0.0


class TestBinaryAuc:
    def test_perfect_ranking_gives_one_not_zero(self):
        y_true = np.array([0, 0, 1, 1])
        positive = np.array([0.1, 0.2, 0.8, 0.9])
        proba = np.column_stack([1 - positive, positive])
        metrics = evaluate.classification_metrics(y_true, proba, ["noise", "signal"])
        assert metrics["macro_roc_auc"] == 1.0
        assert metrics["per_class"]["signal"]["roc_auc"] == 1.0

    def test_uses_positive_column(self):
        y_true = np.array([0, 1, 0, 1])
        positive = np.array([0.1, 0.3, 0.4, 0.9])
        proba = np.column_stack([1 - positive, positive])
        metrics = evaluate.classification_metrics(y_true, proba, ["0", "1"])
        # Positive/negative pairs ranked right: (0.3>0.1), (0.9>0.1), (0.9>0.4) of 4.
        assert metrics["macro_roc_auc"] == pytest.approx(0.75)
        assert metrics["macro_roc_auc"] == pytest.approx(roc_auc_score(y_true, positive))

    def test_positive_column_even_when_rows_do_not_sum_to_one(self):
        # Column 0 carries no information here; only column 1 ranks the classes.
        y_true = np.array([0, 0, 1, 1])
        proba = np.array([[0.5, 0.1], [0.5, 0.2], [0.5, 0.7], [0.5, 0.9]])
        metrics = evaluate.classification_metrics(y_true, proba, ["0", "1"])
        assert metrics["macro_roc_auc"] == 1.0


def test_multiclass_macro_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, size=200)
    logits = rng.normal(size=(200, 4)) + 1.5 * np.eye(4)[y_true]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    metrics = evaluate.classification_metrics(y_true, proba, list("abcd"))
    assert metrics["macro_roc_auc"] == pytest.approx(
        roc_auc_score(y_true, proba, multi_class="ovr", average="macro")
    )


def test_curve_thresholds_are_finite_and_json_strict():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 3, size=60)
    proba = rng.dirichlet(np.ones(3), size=60)
    metrics = evaluate.classification_metrics(y_true, proba, ["x", "y", "z"])
    for name in ("x", "y", "z"):
        roc = metrics["roc_curves"][name]
        assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"])
        assert all(math.isfinite(t) and t <= 1.0 for t in roc["thresholds"])
        assert roc["fpr"][0] == 0.0 and roc["fpr"][-1] == 1.0
        pr = metrics["pr_curves"][name]
        assert all(math.isfinite(t) for t in pr["thresholds"])
        assert pr["prevalence"] == pytest.approx(np.mean(y_true == "xyz".index(name)))
    strict_json(metrics)


def test_long_curves_are_thinned_for_storage():
    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 2, size=5000)
    proba = rng.dirichlet(np.ones(2), size=5000)
    metrics = evaluate.classification_metrics(y_true, proba, ["a", "b"])
    limit = evaluate.MAX_CURVE_POINTS
    for name in ("a", "b"):
        pr = metrics["pr_curves"][name]
        assert 0.9 * limit <= len(pr["precision"]) <= limit
        assert len(pr["recall"]) == len(pr["precision"]) == len(pr["thresholds"]) + 1
        # The ends survive: full recall at the lowest threshold, (recall 0, precision 1) last.
        assert pr["recall"][0] == 1.0 and (pr["recall"][-1], pr["precision"][-1]) == (0.0, 1.0)
        roc = metrics["roc_curves"][name]
        assert len(roc["fpr"]) <= limit
        assert (roc["fpr"][0], roc["tpr"][-1]) == (0.0, 1.0)
    # The scores themselves come from the full curves.
    assert metrics["macro_roc_auc"] == pytest.approx(roc_auc_score(y_true, proba[:, 1]))


def test_expected_calibration_error_by_hand():
    # Confidences 0.95 (right), 0.85 (wrong), 0.65 (right), 0.55 (wrong); 5 bins of 0.2.
    y_true = np.array([0, 0, 1, 0])
    proba = np.array([[0.95, 0.05], [0.15, 0.85], [0.35, 0.65], [0.45, 0.55]])
    # bin (0.8, 1]: 2 examples, accuracy 1/2, confidence 0.9 -> 2/4 * 0.4
    # bin (0.6, 0.8]: accuracy 1, confidence 0.65 -> 1/4 * 0.35
    # bin (0.4, 0.6]: accuracy 0, confidence 0.55 -> 1/4 * 0.55
    expected = 0.5 * 0.4 + 0.25 * 0.35 + 0.25 * 0.55
    assert evaluate.expected_calibration_error(y_true, proba, n_bins=5) == pytest.approx(expected)
    metrics = evaluate.classification_metrics(y_true, proba, ["a", "b"], n_bins=5)
    assert metrics["ece"] == pytest.approx(expected)
    reliability = metrics["reliability"]
    assert reliability["counts"] == [0, 0, 1, 1, 2]
    assert reliability["bin_centers"] == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert reliability["accuracy"][:2] == [None, None]
    assert reliability["accuracy"][2:] == pytest.approx([0.0, 1.0, 0.5])
    assert reliability["confidence"][2:] == pytest.approx([0.55, 0.65, 0.9])


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin():
    # Bins are (lo, hi]: confidences 0.25, 0.5, 0.75 and 1 fall one per bin of four.
    proba = np.array(
        [[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0, 0], [0.75, 0.25, 0, 0], [1.0, 0, 0, 0]]
    )
    metrics = evaluate.classification_metrics(np.zeros(4, dtype=int), proba, list("abcd"), n_bins=4)
    assert metrics["reliability"]["counts"] == [1, 1, 1, 1]


def test_perfectly_calibrated_certain_predictions_have_zero_ece():
    y_true = np.array([0, 1, 2])
    assert evaluate.expected_calibration_error(y_true, np.eye(3)) == 0.0


@pytest.mark.parametrize(
    ("y_true", "proba", "names", "message"),
    [
        (np.array([0, 1]), np.eye(2), ["a"], "class names"),
        (np.array([0, 1, 1]), np.eye(2), ["a", "b"], "labels for 2 rows"),
        (np.array([0, 2]), np.eye(2), ["a", "b"], "labels must lie"),
        (np.array([0, 1]), np.array([[np.nan, 1.0], [0.0, 1.0]]), ["a", "b"], "NaN"),
        (np.array([0, 1]), np.eye(2), ["a", "a"], "unique"),
        (np.array([], dtype=int), np.zeros((0, 2)), ["a", "b"], "no examples"),
    ],
)
def test_inconsistent_input_is_a_clear_error(y_true, proba, names, message):
    with pytest.raises(ValueError, match=message):
        evaluate.classification_metrics(y_true, proba, names)


# --------------------------------------------------------------------------
# auc_vs_observations
# --------------------------------------------------------------------------


def light_curves(lengths: list[int], n_steps: int = 7, n_features: int = 2) -> np.ndarray:
    """Curves whose real steps hold distinct positive values, padded after their length."""
    curves = np.full((len(lengths), n_steps, n_features), MASK)
    for index, length in enumerate(lengths):
        curves[index, :length] = 1 + np.arange(length * n_features).reshape(length, n_features)
    return curves


class FakeModel:
    """Sees only how many real observations each curve has: perfect from 3 on, blind before."""

    def __init__(self, labels: np.ndarray, n_classes: int):
        self.labels = labels
        self.n_classes = n_classes
        self.calls: list[tuple[np.ndarray, object]] = []

    def __call__(self, time_features, contextual_features):
        self.calls.append((time_features.copy(), contextual_features))
        n_real = (~np.all(time_features == MASK, axis=-1)).sum(axis=1)
        uninformative = np.full((len(n_real), self.n_classes), 1 / self.n_classes)
        return np.where((n_real >= 3)[:, None], np.eye(self.n_classes)[self.labels], uninformative)


class TestAucVsObservations:
    lengths = [3, 4, 5, 6, 3, 4, 5, 6]
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    names = ["VS", "SN", "AGN"]

    def run(self, **kwargs):
        curves = light_curves(self.lengths)
        contextual = np.arange(16.0).reshape(8, 2)
        model = FakeModel(self.labels, 3)
        result = evaluate.auc_vs_observations(
            model, curves, contextual, self.labels, self.names, mask_value=MASK, **kwargs
        )
        return result, model, curves, contextual

    def test_auc_rises_when_enough_observations_are_seen(self):
        result, _, _, _ = self.run()
        assert result["n_observations"] == [1, 2, 3, 4, 5, 6]  # longest curve by default
        assert result["macro"][:2] == pytest.approx([0.5, 0.5])
        assert result["macro"][2:] == [1.0, 1.0, 1.0, 1.0]
        for name in self.names:
            assert result["per_class"][name] == pytest.approx([0.5, 0.5, 1, 1, 1, 1])
        assert result["curves_with_at_least_n"] == [8, 8, 8, 6, 4, 2]
        strict_json(result)

    def test_truncation_masks_every_later_step(self):
        _, model, curves, contextual = self.run()
        assert len(model.calls) == 6
        for n_seen, (received, received_contextual) in enumerate(model.calls, start=1):
            assert received_contextual is contextual
            assert received.shape == curves.shape
            for index, length in enumerate(self.lengths):
                kept = min(n_seen, length)
                np.testing.assert_array_equal(received[index, :kept], curves[index, :kept])
                assert np.all(received[index, kept:] == MASK)
        # The caller's array is untouched.
        np.testing.assert_array_equal(curves, light_curves(self.lengths))

    def test_step_with_one_masked_feature_is_real_and_gaps_do_not_count(self):
        curves = light_curves([4])
        curves[0, 1, 0] = MASK  # one feature happens to equal the mask: still real
        curves[0, 2] = MASK  # a whole padded step in the middle: not an observation
        received = []

        def record(time_features, contextual_features):
            received.append(time_features.copy())
            return np.tile([0.5, 0.5], (len(time_features), 1))

        result = evaluate.auc_vs_observations(
            record, curves, None, np.array([0]), ["a", "b"], mask_value=MASK
        )
        assert result["n_observations"] == [1, 2, 3]
        np.testing.assert_array_equal(received[1][0, :2], curves[0, :2])
        assert np.all(received[1][0, 2:] == MASK)
        np.testing.assert_array_equal(received[2], curves)
        # A single class present: AUC undefined everywhere.
        assert result["macro"] == [None, None, None]

    def test_beyond_the_longest_curve_reuses_the_last_prediction(self):
        result, model, _, _ = self.run(max_observations=8)
        assert result["n_observations"] == list(range(1, 9))
        assert result["macro"][-3:] == [1.0, 1.0, 1.0]
        assert result["curves_with_at_least_n"][-2:] == [0, 0]
        assert len(model.calls) == 6

    def test_absent_class_is_none(self):
        labels = np.array([0, 1, 0, 1])
        curves = light_curves([3, 3, 4, 4])
        result = evaluate.auc_vs_observations(
            FakeModel(labels, 3), curves, None, labels, self.names, mask_value=MASK
        )
        assert result["per_class"]["AGN"] == [None] * 4
        assert result["macro"] == pytest.approx([0.5, 0.5, 1.0, 1.0])
        strict_json(result)

    def test_curves_without_observations_are_reported(self):
        with pytest.raises(ValueError, match="no light curve has a real observation"):
            evaluate.auc_vs_observations(
                FakeModel(np.array([0, 1]), 3),
                light_curves([0, 0]),
                None,
                np.array([0, 1]),
                self.names,
                mask_value=MASK,
            )

    def test_wrong_prediction_shape_is_reported(self):
        with pytest.raises(ValueError, match="predict_proba returned shape"):
            evaluate.auc_vs_observations(
                lambda t, c: np.zeros((len(t), 2)),
                light_curves([3, 3]),
                None,
                np.array([0, 1]),
                self.names,
                mask_value=MASK,
            )


# --------------------------------------------------------------------------
# Figures, report, whole evaluation
# --------------------------------------------------------------------------


def imbalanced_predictions(seed: int, n_examples: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.choice(3, size=n_examples, p=[0.8, 0.15, 0.05])
    logits = rng.normal(size=(n_examples, 3)) + 2.0 * np.eye(3)[y_true]
    return y_true, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


HOSTILE_NAMES = ["<b>SN</b>", "VS & co", 'AGN "quoted"']


@pytest.fixture(scope="module")
def test_metrics():
    y_true, proba = imbalanced_predictions(2)
    return evaluate.classification_metrics(y_true, proba, HOSTILE_NAMES)


@pytest.fixture(scope="module")
def auc_curve():
    return {
        "n_observations": [1, 2, 3, 4],
        "macro": [0.6, 0.8, 0.9, 0.95],
        "per_class": {
            HOSTILE_NAMES[0]: [0.55, 0.7, None, 0.9],
            HOSTILE_NAMES[1]: [0.6, 0.85, 0.9, 0.97],
            HOSTILE_NAMES[2]: [0.65, 0.85, 0.95, 0.98],
        },
        "curves_with_at_least_n": [300, 280, 200, 150],
    }


def assert_png(path, min_width=300, min_height=250):
    assert path.is_file() and path.stat().st_size > 0
    height, width = imread(path).shape[:2]
    assert width >= min_width and height >= min_height


@pytest.mark.parametrize(
    "plot",
    [
        lambda m, c, p: evaluate.plot_confusion_matrix(m["confusion_matrix"], "Test", p),
        lambda m, c, p: evaluate.plot_roc_curves(m, p),
        lambda m, c, p: evaluate.plot_pr_curves(m, p),
        lambda m, c, p: evaluate.plot_reliability_diagram(m, p),
        lambda m, c, p: evaluate.plot_auc_vs_observations({"GRU focal": c}, p),
        lambda m, c, p: evaluate.plot_auc_vs_observations(
            {"GRU focal": c, "LSTM focal": c | {"macro": [0.5, 0.7, 0.85, 0.9]}}, p
        ),
    ],
    ids=["confusion", "roc", "pr", "reliability", "auc_single", "auc_models"],
)
def test_each_plot_writes_a_png(plot, test_metrics, auc_curve, tmp_path):
    path = plot(test_metrics, auc_curve, tmp_path / "sub" / "figure.png")
    assert path == tmp_path / "sub" / "figure.png"
    assert_png(path)


def test_plots_cope_with_an_absent_class(tmp_path):
    proba = probabilities_predicting([0, 2, 1, 1], 3)
    metrics = evaluate.classification_metrics(np.array([0, 0, 1, 1]), proba, list("abc"))
    for plot in (
        evaluate.plot_roc_curves,
        evaluate.plot_pr_curves,
        evaluate.plot_reliability_diagram,
    ):
        assert_png(plot(metrics, tmp_path / f"{plot.__name__}.png"))
    assert_png(
        evaluate.plot_confusion_matrix(metrics["confusion_matrix"], "t", tmp_path / "cm.png")
    )


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        if tag == "script":
            self.scripts += 1


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("evaluation")
    y_validation, proba_validation = imbalanced_predictions(3)
    y_test, proba_test = imbalanced_predictions(4)
    auc_curve = evaluate.auc_vs_observations(
        lambda t, c: imbalanced_predictions(4)[1],
        light_curves([2] * 300),
        None,
        y_test,
        HOSTILE_NAMES,
        mask_value=MASK,
    )
    metrics = evaluate.evaluate_predictions(
        output_dir,
        {"validation": (y_validation, proba_validation), "test": (y_test, proba_test)},
        HOSTILE_NAMES,
        auc_curve,
        config={"model": {"rnn": "gru"}, "note": "<script>alert(1)</script>"},
        title="GOTO <demo>",
    )
    return output_dir, metrics


def test_evaluate_predictions_writes_metrics_json(evaluation):
    output_dir, metrics = evaluation
    stored = json.loads(
        (output_dir / "metrics.json").read_text(),
        parse_constant=lambda name: pytest.fail(f"metrics.json holds {name}"),
    )
    assert set(stored) == {"validation", "test", "auc_vs_observations", "operating_point"}
    assert stored == metrics
    assert stored["operating_point"]["recall"].keys() == set(HOSTILE_NAMES)
    for split in ("validation", "test"):
        assert SPLIT_KEYS <= set(stored[split])
        assert list(stored[split]["per_class"]) == HOSTILE_NAMES
    assert stored["auc_vs_observations"]["n_observations"] == [1, 2]


def test_evaluate_predictions_writes_figures(evaluation):
    output_dir, _ = evaluation
    for name in (
        "confusion_matrix_validation",
        "confusion_matrix_test",
        "auc_vs_observations",
        "roc_curves_test",
        "pr_curves_test",
        "reliability_test",
    ):
        assert_png(output_dir / f"{name}.png")


def test_report_is_self_contained_and_escaped(evaluation):
    output_dir, _ = evaluation
    assert [path.name for path in output_dir.glob("*.html")] == ["report.html"]
    text = (output_dir / "report.html").read_text(encoding="utf-8")
    parser = ImageSources()
    parser.feed(text)
    assert len(parser.sources) == 6
    for source in parser.sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in " ".join(parser.sources)
    assert parser.scripts == 0
    assert "&lt;b&gt;SN&lt;/b&gt;" in text
    assert "<b>SN</b>" not in text
    assert "VS &amp; co" in text
    assert "GOTO &lt;demo&gt;" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    for heading in ("Summary", "Validation", "Test", "Early classification", "Configuration"):
        assert f"<h2>{heading}</h2>" in text


def test_evaluate_predictions_overwrites_an_existing_folder(tmp_path):
    y_test, proba_test = imbalanced_predictions(4)
    first = evaluate.evaluate_predictions(
        tmp_path, {"test": (y_test, proba_test)}, ["a", "b", "c"], None
    )
    again = evaluate.evaluate_predictions(
        tmp_path, {"test": (y_test, proba_test)}, ["a", "b", "c"], None
    )
    assert again == first
    assert again["auc_vs_observations"] is None
    assert "Early classification" not in (tmp_path / "report.html").read_text()


def test_write_report_accepts_a_single_split(test_metrics, tmp_path):
    figure = evaluate.plot_roc_curves(test_metrics, tmp_path / "roc.png")
    report = evaluate.write_report(tmp_path / "out", test_metrics, {"roc": figure}, "One split")
    text = report.read_text(encoding="utf-8")
    assert "&lt;b&gt;SN&lt;/b&gt;" in text
    assert text.count("data:image/png;base64,") == 1


def test_write_report_names_a_missing_figure(test_metrics, tmp_path):
    with pytest.raises(FileNotFoundError, match="roc_curves_test"):
        evaluate.write_report(
            tmp_path, {"test": test_metrics}, {"roc_curves_test": tmp_path / "nope.png"}, "t"
        )


def test_operating_point_keeps_the_majority_recall_set_on_validation():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [900, 50, 50])
    proba = rng.dirichlet(np.ones(3), size=labels.size)
    proba[np.arange(labels.size), labels] += 1.0  # informative, imperfect scores
    proba /= proba.sum(axis=1, keepdims=True)
    names = ["VS", "SN", "AGN"]
    point = evaluate.recall_at_majority_recall((labels, proba), (labels, proba), names, 0.95)
    assert point["majority_class"] == "VS" and point["target"] == 0.95
    # Scored on the split that set it, the threshold gives the majority its target recall.
    assert point["recall"]["VS"] == pytest.approx(0.95, abs=2 / 900)
    # A stricter majority target can only take curves away from the rare classes.
    strict = evaluate.recall_at_majority_recall((labels, proba), (labels, proba), names, 0.99)
    assert strict["recall"]["VS"] > point["recall"]["VS"]
    for name in ("SN", "AGN"):
        assert strict["recall"][name] <= point["recall"][name]
    # Below the threshold a curve goes to the most probable other class, never the majority.
    test_proba = np.array([[0.0, 0.6, 0.4], [0.0, 0.3, 0.7]])
    moved = evaluate.recall_at_majority_recall(
        (labels, proba), (np.array([1, 2]), test_proba), names)
    assert moved["recall"] == {"VS": None, "SN": 1.0, "AGN": 1.0}


def test_operating_point_is_in_the_report(evaluation):
    output_dir, metrics = evaluation
    text = (output_dir / "report.html").read_text(encoding="utf-8")
    assert f'{metrics["operating_point"]["threshold"]:.4g}' in text
    assert "of the validation split" in text
