"""GOTO-like synthetic survey: the project's embedded demo data.

The survey imitates the data set of Burhanudin et al. (2021, MNRAS 505, 4345):
light curves of variable stars (VS), supernovae (SN) and active galactic
nuclei (AGN) observed by a wide-field optical survey, with the rare classes
outnumbered by more than a hundred to one. It is built so that the class
information lives in the *temporal shape* of a light curve (periodic vs
rise-then-decline vs stochastic), not in the distribution of its flux values:
brightness, amplitude, number of observations and time span are drawn from the
same distributions for every class. A classifier that only sees order-free
summary statistics (:func:`summary_statistics`) therefore does much worse than
a recurrent network that reads the sequence.

Generative model
----------------
Brightness. Every source has a reference magnitude drawn from Euclidean source
counts, N(<m) ∝ 10^(0.6 m), between m = 11 and m = 19.5 (AB). Most sources are
therefore within a magnitude of the faint limit and a few are thousands of
times brighter, so fluxes (µJy, ``3631e6 * 10**(-0.4 m)``) span four orders
of magnitude between sources. The reference magnitude is the mean magnitude of
a variable star or AGN and the quiescent (host-galaxy light in the aperture)
level of a supernova.

Cadence. Every curve has between 1 and ``max_obs`` observations: 10 per cent
are short (log-uniform between 1 and 10 observations, the "early
classification" regime) and the rest uniform between 10 and ``max_obs``. Each
source has its own typical gap between visits, log-uniform between 0.7 and 6
days; individual gaps are exponential (irregular sampling) with a floor of
0.01 d. Gaps are accumulated in *observable* time and mapped onto the calendar
through the source's visibility season (240 of every 365.25 days, starting on
a random day of the year), which opens the seasonal gaps of ~125 days. The
first observation falls anywhere in the ~8-year survey, so the time column
(days since survey start) runs into the thousands of days. The cadence does
not depend on the class.

Variable stars. Strictly periodic, period log-uniform in 0.1-100 d (most
periods shorter than the cadence, so those curves look like uncorrelated
scatter: aliasing), random phase, peak-to-peak amplitude log-uniform in
0.15-1.5 mag. One of three shapes, in magnitudes:

* sinusoid (30 %): ``m = m0 + A/2 sin(2 pi phase)``;
* pulsator (35 %): sawtooth with a fast rise over a fraction 0.08-0.3 of the
  cycle and a slow linear decline (RR Lyrae / Cepheid-like);
* eclipsing binary (35 %): flat out of eclipse, a primary eclipse of depth A
  and a secondary of depth 0.05-1 x A half a cycle later, each a Gaussian dip
  of width 0.02-0.08 in phase.

Supernovae. The flux above the quiescent level follows the Bazin et al. (2009)
function ``exp(-(t - t0)/tau_fall) / (1 + exp(-(t - t0)/tau_rise))`` with
rise time 1.5-8 d and decline time 15-80 d (observer frame, log-uniform),
normalised to a peak height of 0.3-4 x the quiescent flux (amplitudes of
0.3-1.7 mag, overlapping the variable stars'). The peak falls between 20 per
cent of the curve's time span before its first observation and 70 per cent
of the way through it, so some curves start after the peak and long curves
carry flat pre-explosion and late-time baselines.

AGN. A damped random walk (Ornstein-Uhlenbeck process) in magnitude, sampled
exactly at the irregular epochs: damping time log-uniform in 20-500 d,
long-term rms log-uniform in 0.08-0.5 mag (similar to the variable stars'
rms).

Noise. The reported flux error grows for faint sources:
``sigma^2 = (s * sky)^2 + gain * F + (0.01 F)^2`` with a sky-limited term of
7 µJy (5 sigma at m ≈ 20) scaled per observation by a log-normal seeing/moon
factor ``s``, a Poisson term and a 1 per cent calibration floor. The observed
flux is the true flux plus Gaussian noise of that size, so faint phases can be
negative (forced photometry), never NaN.

Contextual features (``CONTEXT_NAMES``).

* ``host_separation_arcsec``: distance to the nearest galaxy of a shallow
  catalogue within 20". A supernova's host is catalogued 60 % of the time and
  lies at an exponential-disc offset (scale 2.5"); an AGN's host is
  catalogued 55 % of the time and is nuclear up to astrometric scatter
  (Rayleigh, 0.8"). Every source, including those whose true host is missing,
  can instead be matched by chance to an unrelated galaxy (probability 0.35,
  uniform in area within 20"), which is how variable stars get "hosts".
* ``host_magnitude``: catalogue magnitude of that galaxy (chance matches
  follow faint-dominated galaxy counts up to 21; true SN and AGN hosts
  14.5-20.5).
* ``abs_galactic_latitude_deg``: |b|. Variable stars crowd towards the
  Galactic plane (exponential in sin|b|, scale 0.35); SN and AGN are
  isotropic but thinned near the plane by extinction.

When no galaxy is matched both host features hold ``MISSING_HOST_VALUE``
(-1.0), a finite sentinel rather than NaN. The distributions overlap on
purpose (many SN and AGN have no catalogued host, a third of variable stars
have a chance one), so context helps a classifier without giving the answer
away.

Data contract. Time features are ``(N, max_obs, 3)`` float32 with columns
``FEATURE_NAMES`` (time, flux, flux_err), padded after the last observation
with ``mask_value`` in every column; contextual features ``(N, 3)``; labels
one-hot ``(N, 3)`` in ``CLASS_NAMES`` order. Each class is split with
``split_fractions`` (stratified) and each split is shuffled; the same seed
gives byte-identical arrays.
"""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np

CLASS_NAMES = ("VS", "SN", "AGN")
FEATURE_NAMES = ("time", "flux", "flux_err")
CONTEXT_NAMES = ("host_separation_arcsec", "host_magnitude", "abs_galactic_latitude_deg")
# 25000 / 240 > 100:1 imbalance, and a 0.25 test fraction still leaves 60 SN
# and 62 AGN to measure recall on.
DEFAULT_COUNTS = {"VS": 25000, "SN": 240, "AGN": 250}
SPLIT_NAMES = ("train", "validation", "test")
ARRAY_NAMES = ("time_features", "contextual_features", "labels")
MISSING_HOST_VALUE = -1.0

_AB_ZERO_POINT_UJY = 3631e6
_BRIGHTEST_MAG = 11.0
_FAINTEST_MAG = 18.5
_EUCLIDEAN_SLOPE = 0.6

_SURVEY_YEARS = 8
_YEAR_DAYS = 365.25
_SEASON_DAYS = 240.0
_MIN_GAP_DAYS = 0.01
_SHORT_CURVE_FRACTION = 0.10
_SHORT_CURVE_MAX_OBS = 10

_TYPICAL_GAP_DAYS = (1.0, 8.0)
_VS_PERIOD_DAYS = (0.1, 100.0)
_VS_PERIOD_MEDIAN_DAYS = 0.5
_VS_LOG10_PERIOD_SCATTER = 0.5
_VS_AMPLITUDE_MAG = (0.3, 1.5)
# (sinusoid, pulsator, eclipsing binary)
_VS_SHAPE_PROBABILITIES = (0.30, 0.45, 0.25)
_VS_PULSATOR_RISE_FRACTION = (0.05, 0.25)
_SN_RISE_DAYS = (1.5, 8.0)
_SN_DECLINE_DAYS = (15.0, 80.0)
_SN_PEAK_HEIGHT = (0.7, 4.0)
_SN_PEAK_POSITION = (0.05, 0.6)
_AGN_DAMPING_DAYS = (20.0, 150.0)
_AGN_RMS_MAG = (0.2, 0.6)

_SKY_SIGMA_UJY = 3.0
_POISSON_GAIN_UJY = 0.33
_CALIBRATION_FLOOR = 0.01

_CATALOGUE_RADIUS_ARCSEC = 20.0
_CHANCE_MATCH_PROBABILITY = 0.55
_HOST_CATALOGUED_FRACTION = {"SN": 0.75, "AGN": 0.70}
_SN_HOST_OFFSET_ARCSEC = 2.5
_SN_HOST_OFFSET_LOG_SCATTER = 0.6
_AGN_ASTROMETRIC_SCATTER_ARCSEC = 0.6
_VS_SIN_LATITUDE_SCALE = 0.7


def _log_uniform(rng: np.random.Generator, low: float, high: float, size) -> np.ndarray:
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _mag_to_flux(mag: np.ndarray) -> np.ndarray:
    return _AB_ZERO_POINT_UJY * 10.0 ** (-0.4 * mag)


def _reference_magnitudes(rng: np.random.Generator, n: int) -> np.ndarray:
    # Inverse CDF of N(<m) ∝ 10^(slope m) between the bright and faint limits.
    low, high = (
        10.0 ** (_EUCLIDEAN_SLOPE * _BRIGHTEST_MAG),
        10.0 ** (_EUCLIDEAN_SLOPE * _FAINTEST_MAG),
    )
    return np.log10(low + rng.uniform(size=n) * (high - low)) / _EUCLIDEAN_SLOPE


def _observation_counts(rng: np.random.Generator, n: int, max_obs: int) -> np.ndarray:
    short_max = min(_SHORT_CURVE_MAX_OBS, max_obs)
    short = rng.integers(1, short_max + 1, n)
    long = rng.integers(short_max, max_obs + 1, n)
    is_short = rng.uniform(size=n) < _SHORT_CURVE_FRACTION
    return np.clip(np.where(is_short, short, long), 1, max_obs)


def _observation_times(rng: np.random.Generator, n_obs: np.ndarray, max_obs: int) -> np.ndarray:
    """Days since survey start, (n, max_obs); steps past n_obs repeat the last real time."""
    n = n_obs.size
    typical_gap = _log_uniform(rng, *_TYPICAL_GAP_DAYS, (n, 1))
    gaps = np.maximum(rng.exponential(1.0, (n, max_obs)) * typical_gap, _MIN_GAP_DAYS)
    gaps[:, 0] = 0.0
    steps = np.arange(max_obs)[None, :]
    gaps[steps >= n_obs[:, None]] = 0.0
    observable = np.cumsum(gaps, axis=1)
    # Start anywhere in the survey's observable time that leaves room for the
    # whole curve, so late starts do not run off the end of the survey.
    observable_total = _SURVEY_YEARS * _SEASON_DAYS
    room = np.maximum(observable_total - observable[:, -1], 0.0)
    observable = observable + rng.uniform(size=(n, 1)) * room[:, None]
    season_start = rng.uniform(0.0, _YEAR_DAYS, (n, 1))
    seasons, within = np.divmod(observable, _SEASON_DAYS)
    return season_start + seasons * _YEAR_DAYS + within


def _variable_star_magnitudes(rng: np.random.Generator, times: np.ndarray) -> np.ndarray:
    """Magnitude offsets (n, T) of periodic variables: sinusoid, pulsator or eclipsing."""
    n = times.shape[0]
    # Log-normal: most catalogued periodic variables are sub-day contact
    # binaries and RR Lyrae, with a tail of Cepheid-like periods.
    log_period = rng.normal(np.log10(_VS_PERIOD_MEDIAN_DAYS), _VS_LOG10_PERIOD_SCATTER, (n, 1))
    period = np.clip(10.0**log_period, *_VS_PERIOD_DAYS)
    amplitude = _log_uniform(rng, *_VS_AMPLITUDE_MAG, (n, 1))
    phase = np.mod(times / period + rng.uniform(size=(n, 1)), 1.0)
    kind = rng.choice(3, size=(n, 1), p=_VS_SHAPE_PROBABILITIES)

    sinusoid = 0.5 * np.sin(2.0 * np.pi * phase)

    rise_fraction = rng.uniform(*_VS_PULSATOR_RISE_FRACTION, (n, 1))
    brightness = np.where(
        phase < rise_fraction, phase / rise_fraction, (1.0 - phase) / (1.0 - rise_fraction)
    )
    pulsator = 0.5 - brightness

    width = rng.uniform(0.02, 0.08, (n, 1))
    secondary_ratio = rng.uniform(0.05, 1.0, (n, 1))
    from_primary = np.minimum(phase, 1.0 - phase)
    from_secondary = np.abs(phase - 0.5)
    eclipsing = np.exp(-0.5 * (from_primary / width) ** 2) + secondary_ratio * np.exp(
        -0.5 * (from_secondary / width) ** 2
    )
    # Centre the dips so the reference magnitude stays the typical level.
    eclipsing = eclipsing - 0.5

    shape = np.select([kind == 0, kind == 1], [sinusoid, pulsator], eclipsing)
    return amplitude * shape


def _supernova_relative_flux(
    rng: np.random.Generator, times: np.ndarray, n_obs: np.ndarray
) -> np.ndarray:
    """Quiescent level plus a Bazin-shaped event (n, T), in units of the reference flux."""
    n = times.shape[0]
    tau_rise = _log_uniform(rng, *_SN_RISE_DAYS, (n, 1))
    tau_fall = _log_uniform(rng, *_SN_DECLINE_DAYS, (n, 1))
    peak_height = _log_uniform(rng, *_SN_PEAK_HEIGHT, (n, 1))
    first = times[:, :1]
    last = times[np.arange(n), n_obs - 1][:, None]
    span = np.maximum(last - first, 1.0)
    peak_time = first + rng.uniform(*_SN_PEAK_POSITION, (n, 1)) * span
    # The Bazin function peaks tau_rise * ln(tau_fall/tau_rise - 1) after t0.
    t0 = peak_time - tau_rise * np.log(tau_fall / tau_rise - 1.0)
    x = times - t0
    # log-space evaluation: exp of the plain form overflows far from the peak.
    log_bazin = -x / tau_fall - np.logaddexp(0.0, -x / tau_rise)
    log_peak = -(peak_time - t0) / tau_fall - np.logaddexp(0.0, -(peak_time - t0) / tau_rise)
    event = peak_height * np.exp(log_bazin - log_peak)
    # The reference flux is the geometric mean of the quiescent and peak
    # levels, so supernovae are neither brighter nor fainter than the others.
    return (1.0 + event) / np.sqrt(1.0 + peak_height)


def _agn_magnitudes(rng: np.random.Generator, times: np.ndarray) -> np.ndarray:
    """Damped random walk magnitude offsets (n, T), exact on irregular epochs."""
    n, steps = times.shape
    tau = _log_uniform(rng, *_AGN_DAMPING_DAYS, (n,))
    sigma = _log_uniform(rng, *_AGN_RMS_MAG, (n,))
    offsets = np.empty((n, steps))
    offsets[:, 0] = sigma * rng.standard_normal(n)
    for step in range(1, steps):
        decay = np.exp(-(times[:, step] - times[:, step - 1]) / tau)
        innovation = sigma * np.sqrt(1.0 - decay**2) * rng.standard_normal(n)
        offsets[:, step] = offsets[:, step - 1] * decay + innovation
    return offsets


def _observe(rng: np.random.Generator, true_flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adds magnitude-dependent noise; returns (observed flux, reported error)."""
    conditions = np.clip(np.exp(0.3 * rng.standard_normal(true_flux.shape)), 0.5, 3.0)
    positive = np.maximum(true_flux, 0.0)
    flux_err = np.sqrt(
        (_SKY_SIGMA_UJY * conditions) ** 2
        + _POISSON_GAIN_UJY * positive
        + (_CALIBRATION_FLOOR * positive) ** 2
    )
    return true_flux + flux_err * rng.standard_normal(true_flux.shape), flux_err


def _galaxy_catalogue_magnitudes(rng: np.random.Generator, n: int) -> np.ndarray:
    # Galaxy counts rise steeply (N(<m) ∝ 10^(0.45 m)) up to the catalogue limit.
    low, high = 10.0 ** (0.45 * 13.0), 10.0 ** (0.45 * 21.0)
    return np.log10(low + rng.uniform(size=n) * (high - low)) / 0.45


def _contextual_features(rng: np.random.Generator, class_name: str, n: int) -> np.ndarray:
    """(n, 3) host separation, host magnitude and |b| for one class."""
    if class_name == "VS":
        # Exponential in sin|b| truncated to [0, 1], by inverse CDF.
        scale = _VS_SIN_LATITUDE_SCALE
        sin_b = -scale * np.log(1.0 - rng.uniform(size=n) * (1.0 - np.exp(-1.0 / scale)))
        true_host_found = np.zeros(n, dtype=bool)
    else:
        # Isotropic, thinned near the plane by extinction: rejection sampling.
        sin_b = np.empty(0)
        while sin_b.size < n:
            candidates = rng.uniform(size=2 * n)
            kept = rng.uniform(size=2 * n) < 1.0 - np.exp(-candidates / 0.1)
            sin_b = np.concatenate([sin_b, candidates[kept]])
        sin_b = sin_b[:n]
        true_host_found = rng.uniform(size=n) < _HOST_CATALOGUED_FRACTION[class_name]
    abs_latitude = np.degrees(np.arcsin(sin_b))

    if class_name == "SN":
        true_separation = _SN_HOST_OFFSET_ARCSEC * np.exp(
            _SN_HOST_OFFSET_LOG_SCATTER * rng.standard_normal(n))
    else:
        true_separation = _AGN_ASTROMETRIC_SCATTER_ARCSEC * np.sqrt(
            -2.0 * np.log(1.0 - rng.uniform(size=n)))
    true_host_mag = rng.uniform(14.5, 20.5, n)

    chance_found = rng.uniform(size=n) < _CHANCE_MATCH_PROBABILITY
    chance_separation = _CATALOGUE_RADIUS_ARCSEC * np.sqrt(rng.uniform(size=n))
    chance_mag = _galaxy_catalogue_magnitudes(rng, n)

    separation = np.where(true_host_found, true_separation, chance_separation)
    host_mag = np.where(true_host_found, true_host_mag, chance_mag)
    matched = true_host_found | chance_found
    separation = np.where(matched, separation, MISSING_HOST_VALUE)
    host_mag = np.where(matched, host_mag, MISSING_HOST_VALUE)
    return np.stack([separation, host_mag, abs_latitude], axis=1)


def _simulate_class(
    rng: np.random.Generator, class_name: str, n: int, max_obs: int, mask_value: float
) -> tuple[np.ndarray, np.ndarray]:
    """Returns padded time features (n, max_obs, 3) and contextual features (n, 3)."""
    n_obs = _observation_counts(rng, n, max_obs)
    times = _observation_times(rng, n_obs, max_obs)
    reference_flux = _mag_to_flux(_reference_magnitudes(rng, n))[:, None]
    if class_name == "VS":
        true_flux = reference_flux * 10.0 ** (-0.4 * _variable_star_magnitudes(rng, times))
    elif class_name == "SN":
        true_flux = reference_flux * _supernova_relative_flux(rng, times, n_obs)
    else:
        true_flux = reference_flux * 10.0 ** (-0.4 * _agn_magnitudes(rng, times))
    flux, flux_err = _observe(rng, true_flux)

    time_features = np.stack([times, flux, flux_err], axis=2)
    padded = np.arange(max_obs)[None, :] >= n_obs[:, None]
    time_features[padded] = mask_value
    return time_features.astype(np.float32), _contextual_features(rng, class_name, n).astype(
        np.float32
    )


def _split_sizes(n: int, fractions: Sequence[float]) -> np.ndarray:
    # Largest remainder: sizes sum to n and each is within 1 of n * fraction.
    exact = n * np.asarray(fractions, dtype=np.float64)
    sizes = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[: n - sizes.sum()]] += 1
    return sizes


def _validate_arguments(
    counts: Mapping[str, int], max_obs: int, mask_value: float, split_fractions: Sequence[float]
) -> None:
    for class_name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(
                f"n_{class_name.lower()} must be a non-negative integer, got {count!r}"
            )
    if sum(counts.values()) == 0:
        raise ValueError("at least one class needs a positive count")
    if isinstance(max_obs, bool) or not isinstance(max_obs, (int, np.integer)) or max_obs < 1:
        raise ValueError(f"max_obs must be a positive integer, got {max_obs!r}")
    if not np.isfinite(mask_value) or mask_value >= 0.0:
        # Times are >= 0, so a negative mask can never be mistaken for a real step.
        raise ValueError(f"mask_value must be finite and negative, got {mask_value!r}")
    fractions = np.asarray(split_fractions, dtype=np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(
            f"split_fractions must be three non-negative numbers (train, validation, test) "
            f"summing to 1, got {split_fractions!r}"
        )


def simulate_survey(
    n_vs: int = DEFAULT_COUNTS["VS"],
    n_sn: int = DEFAULT_COUNTS["SN"],
    n_agn: int = DEFAULT_COUNTS["AGN"],
    seed: int = 0,
    max_obs: int = 60,
    mask_value: float = -99.0,
    split_fractions: Sequence[float] = (0.6, 0.15, 0.25),
) -> dict[str, dict[str, np.ndarray]]:
    """Simulates a labelled GOTO-like survey, split into train/validation/test.

    The generative model is described in the module docstring. Each class is
    simulated from its own random stream, so changing one class's count does
    not change the other classes' light curves.

    Args:
        n_vs: Number of variable stars.
        n_sn: Number of supernovae.
        n_agn: Number of active galactic nuclei.
        seed: Seed of all randomness; the same seed gives byte-identical arrays.
        max_obs: Number of time steps T; curves have 1 to ``max_obs`` observations.
        mask_value: Value of every feature of a padded step (finite, negative).
        split_fractions: Fractions (train, validation, test) applied to each
            class separately (stratified split); must sum to 1.

    Returns:
        ``{"train": split, "validation": split, "test": split}`` where each split
        maps ``"time_features"`` to a float32 array (N, max_obs, 3) with columns
        ``FEATURE_NAMES`` padded after the last observation,
        ``"contextual_features"`` to float32 (N, 3) with columns
        ``CONTEXT_NAMES``, and ``"labels"`` to one-hot float32 (N, 3) in
        ``CLASS_NAMES`` order. Rows are shuffled within each split.

    Raises:
        ValueError: If a count, ``max_obs``, ``mask_value`` or
            ``split_fractions`` is invalid.
    """
    counts = {"VS": n_vs, "SN": n_sn, "AGN": n_agn}
    _validate_arguments(counts, max_obs, mask_value, split_fractions)
    class_streams = np.random.SeedSequence(seed).spawn(len(CLASS_NAMES) + 1)
    split_rng = np.random.default_rng(class_streams[-1])

    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
        name: [] for name in SPLIT_NAMES
    }
    for class_index, class_name in enumerate(CLASS_NAMES):
        n = int(counts[class_name])
        time_features, contextual = _simulate_class(
            np.random.default_rng(class_streams[class_index]),
            class_name,
            n,
            max_obs,
            float(mask_value),
        )
        labels = np.zeros((n, len(CLASS_NAMES)), dtype=np.float32)
        labels[:, class_index] = 1.0
        # Curves are i.i.d. within a class, but permute anyway so a split never
        # depends on simulation order.
        order = split_rng.permutation(n)
        boundaries = np.cumsum(_split_sizes(n, split_fractions))[:-1]
        for split_name, rows in zip(SPLIT_NAMES, np.split(order, boundaries), strict=True):
            parts[split_name].append((time_features[rows], contextual[rows], labels[rows]))

    survey = {}
    for split_name in SPLIT_NAMES:
        time_features, contextual, labels = (
            np.concatenate(arrays) for arrays in zip(*parts[split_name], strict=True)
        )
        shuffle = split_rng.permutation(len(labels))
        survey[split_name] = {
            "time_features": np.ascontiguousarray(time_features[shuffle]),
            "contextual_features": np.ascontiguousarray(contextual[shuffle]),
            "labels": np.ascontiguousarray(labels[shuffle]),
        }
    return survey


def summary_statistics(time_features: np.ndarray, mask_value: float = -99.0) -> np.ndarray:
    """Order-free per-curve statistics for a non-sequential baseline classifier.

    Except for the time span, the statistics ignore the order of the
    observations: they measure how much the *distribution* of flux values
    reveals, which is what a sequence model has to beat. Heavy-tailed
    quantities are put on a log-like scale (asinh) so a linear model can use
    them.

    Args:
        time_features: (N, T, 3) array with columns ``FEATURE_NAMES``, padded
            after the last observation with ``mask_value``.
        mask_value: Padding value.

    Returns:
        float64 array (N, 10): number of observations, log10(1 + time span
        in days), asinh of the mean, standard deviation, minimum and maximum
        flux, skewness of the flux, std / |mean| and (max - min) / |mean| of the
        flux, and asinh of the mean flux error.
    """
    real = ~np.all(time_features == mask_value, axis=2)
    n_obs = real.sum(axis=1)
    if np.any(n_obs == 0):
        raise ValueError("every curve needs at least one real observation")
    times = time_features[..., 0].astype(np.float64)
    flux = time_features[..., 1].astype(np.float64)
    flux_err = time_features[..., 2].astype(np.float64)
    real_flux = np.where(real, flux, np.nan)

    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(real_flux, axis=1)
        std = np.nanstd(real_flux, axis=1)
        low = np.nanmin(real_flux, axis=1)
        high = np.nanmax(real_flux, axis=1)
        centred = real_flux - mean[:, None]
        third_moment = np.nanmean(centred**3, axis=1)
        skewness = np.where(std > 0, third_moment / np.maximum(std, 1e-12) ** 3, 0.0)
        scale = np.maximum(np.abs(mean), 1e-6)
    span = np.where(real, times, -np.inf).max(axis=1) - np.where(real, times, np.inf).min(axis=1)
    mean_err = np.where(real, flux_err, 0.0).sum(axis=1) / n_obs
    return np.stack(
        [
            n_obs,
            np.log10(1.0 + span),
            np.arcsinh(mean),
            np.arcsinh(std),
            np.arcsinh(low),
            np.arcsinh(high),
            skewness,
            np.arcsinh(std / scale),
            np.arcsinh((high - low) / scale),
            np.arcsinh(mean_err),
        ],
        axis=1,
    )


def summary_statistics_baseline(train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                                mask_value: float = -99.0) -> np.ndarray:
    """Test-set probabilities of the order-free baseline the RNN must beat.

    A class-balanced logistic regression on :func:`summary_statistics` plus the
    contextual features, standardised on the training split.

    Args:
        train: {"time_features", "contextual_features", "labels"} of the
            training split (labels one-hot or integer).
        test: the same for the split to score.
        mask_value: Padding value.

    Returns:
        (N_test, K) class probabilities.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features(split: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.hstack([summary_statistics(np.asarray(split["time_features"]), mask_value),
                          np.asarray(split["contextual_features"], dtype=np.float64)])

    labels = np.asarray(train["labels"])
    labels = labels.argmax(axis=1) if labels.ndim == 2 else labels
    model = make_pipeline(StandardScaler(),
                          LogisticRegression(max_iter=2000, class_weight="balanced"))
    model.fit(features(train), labels)
    return model.predict_proba(features(test))


def write_survey(
    output_dir: str | os.PathLike[str],
    survey: Mapping[str, Mapping[str, np.ndarray]],
    class_names: Sequence[str] = CLASS_NAMES,
) -> None:
    """Writes a survey as the nine ``{split}_{array}.npy`` files plus classes.txt.

    Files are written into a temporary sibling folder that is renamed into
    place at the end, so an interrupted run never leaves a half-written data
    set under ``output_dir``.

    Args:
        output_dir: Folder to create; it may exist only if it is empty.
        survey: Output of :func:`simulate_survey` (splits ``SPLIT_NAMES``, each
            with arrays ``ARRAY_NAMES``).
        class_names: Class names in label order, one per line in classes.txt.

    Raises:
        FileExistsError: If ``output_dir`` exists and is not an empty folder.
        ValueError: If ``survey`` lacks a split or an array, or the number of
            class names does not match the labels.
    """
    output_dir = pathlib.Path(output_dir)
    for split_name in SPLIT_NAMES:
        missing = [name for name in ARRAY_NAMES if name not in survey.get(split_name, {})]
        if missing:
            raise ValueError(f"survey split {split_name!r} lacks {', '.join(missing)}")
        label_shape = np.shape(survey[split_name]["labels"])
        if len(label_shape) != 2:
            raise ValueError(
                f"labels of split {split_name!r} must be 2-D one-hot, got shape {label_shape}"
            )
        n_classes = label_shape[1]
        if n_classes != len(class_names):
            raise ValueError(
                f"{len(class_names)} class names for {n_classes} label columns in {split_name!r}"
            )
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(
            errno.EEXIST, "output folder exists and is not empty", str(output_dir)
        )

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(
        tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent)
    )
    try:
        for split_name in SPLIT_NAMES:
            for array_name in ARRAY_NAMES:
                array = np.asarray(survey[split_name][array_name], dtype=np.float32)
                np.save(staging / f"{split_name}_{array_name}.npy", array, allow_pickle=False)
        (staging / "classes.txt").write_text(
            "".join(f"{name}\n" for name in class_names), encoding="utf-8"
        )
        staging.chmod(0o755)  # mkdtemp makes it private; the data set is not.
        try:
            # rename() replaces an empty folder atomically and refuses a full one.
            os.rename(staging, output_dir)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise FileExistsError(
                    errno.EEXIST, "output folder exists and is not empty", str(output_dir)
                ) from error
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
