"""Tests of the GOTO-like synthetic survey (rnn_classifier.simulate)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from rnn_classifier.simulate import (
    ARRAY_NAMES,
    CLASS_NAMES,
    CONTEXT_NAMES,
    DEFAULT_COUNTS,
    FEATURE_NAMES,
    MISSING_HOST_VALUE,
    SPLIT_NAMES,
    simulate_survey,
    summary_statistics,
    summary_statistics_baseline,
    write_survey,
)

MASK = -99.0
SMALL_COUNTS = {"n_vs": 300, "n_sn": 40, "n_agn": 40}
SPLIT_FRACTIONS = (0.6, 0.15, 0.25)


@pytest.fixture(scope="module")
def small_survey():
    return simulate_survey(**SMALL_COUNTS, seed=3)


@pytest.fixture(scope="module")
def default_survey():
    # Simulating the default survey takes about a second; reused by several tests.
    return simulate_survey(seed=0)


def _real_steps(time_features, mask_value=MASK):
    return ~np.all(time_features == mask_value, axis=2)


def _all_splits(survey, array_name):
    return np.concatenate([survey[split][array_name] for split in SPLIT_NAMES])


def test_public_names_describe_the_arrays(small_survey):
    assert CLASS_NAMES == ("VS", "SN", "AGN")
    assert FEATURE_NAMES == ("time", "flux", "flux_err")
    assert set(DEFAULT_COUNTS) == set(CLASS_NAMES)
    assert small_survey["train"]["contextual_features"].shape[1] == len(CONTEXT_NAMES)


def test_shapes_and_dtypes(small_survey):
    assert set(small_survey) == set(SPLIT_NAMES)
    total = 0
    for split in SPLIT_NAMES:
        arrays = small_survey[split]
        assert set(arrays) == set(ARRAY_NAMES)
        n = arrays["labels"].shape[0]
        total += n
        assert arrays["time_features"].shape == (n, 60, len(FEATURE_NAMES))
        assert arrays["contextual_features"].shape == (n, len(CONTEXT_NAMES))
        assert arrays["labels"].shape == (n, len(CLASS_NAMES))
        for array in arrays.values():
            assert array.dtype == np.float32
    assert total == sum(SMALL_COUNTS.values())


def test_max_obs_sets_the_number_of_steps():
    survey = simulate_survey(n_vs=20, n_sn=5, n_agn=5, max_obs=12)
    time_features = _all_splits(survey, "time_features")
    assert time_features.shape[1] == 12
    assert _real_steps(time_features).sum(axis=1).max() <= 12


def test_labels_are_one_hot_and_cover_every_class(small_survey):
    labels = _all_splits(small_survey, "labels")
    assert set(np.unique(labels)) == {0.0, 1.0}
    np.testing.assert_array_equal(labels.sum(axis=1), 1.0)
    counts = labels.sum(axis=0)
    np.testing.assert_array_equal(
        counts, [SMALL_COUNTS["n_vs"], SMALL_COUNTS["n_sn"], SMALL_COUNTS["n_agn"]]
    )


def test_no_nan_or_inf(small_survey):
    for split in SPLIT_NAMES:
        for array in small_survey[split].values():
            assert np.all(np.isfinite(array))


def test_padding_is_trailing_and_complete(small_survey):
    time_features = _all_splits(small_survey, "time_features")
    real = _real_steps(time_features)
    n_obs = real.sum(axis=1)
    assert n_obs.min() >= 1
    # Strictly trailing: the real steps are exactly the first n_obs steps.
    np.testing.assert_array_equal(real, np.arange(real.shape[1])[None, :] < n_obs[:, None])
    # A padded step has the mask in every feature; a real step in none.
    assert np.all(time_features[~real] == MASK)
    assert not np.any(time_features[real] == MASK)


def test_custom_mask_value_is_used():
    time_features = _all_splits(
        simulate_survey(n_vs=30, n_sn=5, n_agn=5, mask_value=-1.0), "time_features"
    )
    real = _real_steps(time_features, mask_value=-1.0)
    assert np.all(time_features[~real] == -1.0)
    assert not np.any(time_features == MASK)


def test_observation_counts_spread_from_one_to_max(default_survey):
    n_obs = _real_steps(_all_splits(default_survey, "time_features")).sum(axis=1)
    assert n_obs.min() == 1
    assert n_obs.max() == 60
    assert 0.03 < np.mean(n_obs <= 5) < 0.2, "some, not most, curves should be short"
    assert np.std(n_obs) > 10
    # The cadence does not depend on the class, so neither does the length.
    labels = _all_splits(default_survey, "labels").argmax(axis=1)
    medians = [np.median(n_obs[labels == k]) for k in range(len(CLASS_NAMES))]
    assert max(medians) - min(medians) < 10


def test_times_are_days_since_survey_start_increasing(small_survey):
    time_features = _all_splits(small_survey, "time_features")
    real = _real_steps(time_features)
    times = np.where(real, time_features[..., 0], np.nan)
    assert np.nanmin(times) >= 0.0
    assert np.nanmax(times) > 2000.0, "the survey runs for thousands of days"
    steps = np.diff(times, axis=1)
    assert np.all(steps[~np.isnan(steps)] > 0.0)


def test_stratified_split_proportions(small_survey):
    expected_totals = [SMALL_COUNTS["n_vs"], SMALL_COUNTS["n_sn"], SMALL_COUNTS["n_agn"]]
    for split, fraction in zip(SPLIT_NAMES, SPLIT_FRACTIONS, strict=True):
        per_class = small_survey[split]["labels"].sum(axis=0)
        for count, total in zip(per_class, expected_totals, strict=True):
            assert abs(count - fraction * total) <= 1.0


def test_splits_are_shuffled(small_survey):
    labels = small_survey["train"]["labels"].argmax(axis=1)
    # Unshuffled rows would be sorted by class.
    assert np.any(np.diff(labels) < 0)


def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    first = simulate_survey(**SMALL_COUNTS, seed=11)
    again = simulate_survey(**SMALL_COUNTS, seed=11)
    other = simulate_survey(**SMALL_COUNTS, seed=12)
    for split in SPLIT_NAMES:
        for name in ARRAY_NAMES:
            assert first[split][name].tobytes() == again[split][name].tobytes()
        assert first[split]["time_features"].tobytes() != other[split]["time_features"].tobytes()


def test_rare_class_counts_leave_common_class_curves_unchanged():
    fewer = simulate_survey(n_vs=50, n_sn=5, n_agn=5, seed=4)
    more = simulate_survey(n_vs=50, n_sn=9, n_agn=7, seed=4)

    def variable_star_curves(survey):
        time_features = _all_splits(survey, "time_features")
        is_vs = _all_splits(survey, "labels")[:, 0] == 1.0
        return sorted(curve.tobytes() for curve in time_features[is_vs])

    assert variable_star_curves(fewer) == variable_star_curves(more)


def test_default_counts_are_imbalanced_yet_testable(default_survey):
    rarest = min(DEFAULT_COUNTS["SN"], DEFAULT_COUNTS["AGN"])
    assert DEFAULT_COUNTS["VS"] >= 100 * rarest
    test_counts = default_survey["test"]["labels"].sum(axis=0)
    assert test_counts[CLASS_NAMES.index("SN")] >= 50
    assert test_counts[CLASS_NAMES.index("AGN")] >= 50


def test_paper_counts_work():
    survey = simulate_survey(n_vs=30000, n_agn=160, n_sn=60)
    counts = _all_splits(survey, "labels").sum(axis=0)
    np.testing.assert_array_equal(counts, [30000, 60, 160])


def test_flux_is_heavy_tailed_and_errors_grow_for_faint_sources(default_survey):
    time_features = _all_splits(default_survey, "time_features")
    real = _real_steps(time_features)
    flux, flux_err = time_features[..., 1][real], time_features[..., 2][real]
    assert flux.max() / np.median(flux) > 100
    assert np.all(flux_err > 0)
    faint = flux < np.quantile(flux, 0.25)
    bright = flux > np.quantile(flux, 0.75)
    # Relative errors of the faintest quarter of observations are at least 1.5x
    # those of the brightest quarter (about 2x on the default survey).
    assert np.median(flux_err[faint] / np.abs(flux[faint])) > 1.5 * np.median(
        flux_err[bright] / flux[bright]
    )


def test_contextual_features_use_a_finite_missing_host_sentinel(default_survey):
    contextual = _all_splits(default_survey, "contextual_features")
    labels = _all_splits(default_survey, "labels").argmax(axis=1)
    separation, host_mag, latitude = contextual.T
    missing = separation == MISSING_HOST_VALUE
    np.testing.assert_array_equal(missing, host_mag == MISSING_HOST_VALUE)
    assert np.all(separation[~missing] >= 0)
    assert np.all((latitude >= 0) & (latitude <= 90))
    for k in range(len(CLASS_NAMES)):
        # Every class has both matched and unmatched sources: context helps,
        # it does not decide.
        assert 0.1 < missing[labels == k].mean() < 0.9


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="split_fractions"):
        simulate_survey(n_vs=10, n_sn=2, n_agn=2, split_fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="n_sn"):
        simulate_survey(n_vs=10, n_sn=-1, n_agn=2)
    with pytest.raises(ValueError, match="max_obs"):
        simulate_survey(n_vs=10, n_sn=2, n_agn=2, max_obs=0)
    with pytest.raises(ValueError, match="mask_value"):
        simulate_survey(n_vs=10, n_sn=2, n_agn=2, mask_value=float("nan"))


def test_summary_statistics_are_finite_and_count_observations(small_survey):
    time_features = small_survey["train"]["time_features"]
    statistics = summary_statistics(time_features, MASK)
    assert statistics.shape[0] == time_features.shape[0]
    assert np.all(np.isfinite(statistics))
    np.testing.assert_array_equal(statistics[:, 0], _real_steps(time_features).sum(axis=1))


def test_logistic_regression_on_summary_statistics_stays_below_ceiling():
    # The class information lives in temporal shape; an order-free baseline
    # (with the contextual features) must stay clearly below a sequence model.
    survey = simulate_survey(n_vs=4000, n_sn=400, n_agn=400, seed=5)
    probabilities = summary_statistics_baseline(survey["train"], survey["test"], MASK)
    truth = survey["test"]["labels"].argmax(axis=1)
    macro_auc = np.mean(
        [roc_auc_score(truth == k, probabilities[:, k]) for k in range(len(CLASS_NAMES))]
    )
    assert 0.6 < macro_auc < 0.9


def test_write_survey_writes_exactly_the_data_contract(tmp_path, small_survey):
    output_dir = tmp_path / "survey"
    write_survey(output_dir, small_survey)
    expected = {f"{split}_{name}.npy" for split in SPLIT_NAMES for name in ARRAY_NAMES} | {
        "classes.txt"
    }
    assert {path.name for path in output_dir.iterdir()} == expected
    assert (output_dir / "classes.txt").read_text().splitlines() == list(CLASS_NAMES)
    for split in SPLIT_NAMES:
        for name in ARRAY_NAMES:
            loaded = np.load(output_dir / f"{split}_{name}.npy", allow_pickle=False)
            assert loaded.dtype == np.float32
            np.testing.assert_array_equal(loaded, small_survey[split][name])
    assert [path.name for path in tmp_path.iterdir()] == ["survey"], (
        "no temporary folder left behind"
    )


def test_write_survey_fills_an_existing_empty_folder(tmp_path, small_survey):
    output_dir = tmp_path / "survey"
    output_dir.mkdir()
    write_survey(output_dir, small_survey)
    assert len(list(output_dir.iterdir())) == 10
    assert [path.name for path in tmp_path.iterdir()] == ["survey"]


def test_write_survey_refuses_a_non_empty_folder(tmp_path, small_survey):
    output_dir = tmp_path / "survey"
    output_dir.mkdir()
    (output_dir / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_survey(output_dir, small_survey)
    assert [path.name for path in output_dir.iterdir()] == ["notes.txt"]
    assert [path.name for path in tmp_path.iterdir()] == ["survey"]


def test_write_survey_leaves_nothing_when_writing_fails(tmp_path, small_survey):
    broken = {split: dict(arrays) for split, arrays in small_survey.items()}
    # Written last, after eight files are already in the staging folder.
    broken["test"]["time_features"] = np.array(["not a number"])
    with pytest.raises(ValueError):
        write_survey(tmp_path / "survey", broken)
    assert list(tmp_path.iterdir()) == []
