"""Quality on real data: the defaults against the original configuration and strong baselines.

    make bench-quality                   # the whole suite, 3 seeds, one run per core
    .venv/bin/python -m benchmarks.real_data --datasets GunPoint,ArrowHead --seeds 1 --jobs 1
    .venv/bin/python -m benchmarks.real_data --methods defaults --variant lr=learning_rate=1e-3

Datasets (benchmarks/reference_sets.py): every labelled classification set
that aeon bundles, each also as an imbalanced variant, and the default
simulated survey. Each becomes the nine-file contract with a stratified
validation split cut from its training split; every method is scored on the
same test split by rnn_classifier.evaluate.classification_metrics.

Methods, each run once per seed (mean +- sd over the seeds):
- defaults: `rnn-classifier train` with nothing but the data's own facts set
  (no contextual features on the aeon sets; the survey's time column);
- original: the same with `--preset original` (the original project's model
  and training);
- gradient_boosting: HistGradientBoostingClassifier (defaults) on per-series
  summary statistics and the contextual features (rnn_classifier.baselines);
- minirocket: aeon's MiniRocketClassifier (defaults) on the same scaled time
  series, padding set to 0. Its ridge classifier gives hard labels, so its
  ROC-AUC is not comparable and is not reported.
Extra rows (--variant NAME=KEY=VALUE[,KEY=VALUE]) train the defaults with
overrides, for measuring a change before it becomes a default.

Runs go to --jobs worker processes (one per core by default), each computing
on one thread, so a run's training seconds are one core's. Prints one table
and writes every run's figures, the suite means and the acceptance checks to
benchmarks/real_data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.performance import machine
from benchmarks.reference_sets import (
    AEON_SETS,
    imbalance_ratio,
    imbalanced_variant,
    write_aeon_set,
)
from rnn_classifier.baselines import gradient_boosting_baseline
from rnn_classifier.config import DEFAULTS, ConfigError, TrainConfig, field_type, preset
from rnn_classifier.data import Scaler, load_dataset
from rnn_classifier.evaluate import classification_metrics
from rnn_classifier.predict import load_trained_model
from rnn_classifier.simulate import simulate_survey, write_survey
from rnn_classifier.train import train

ROOT = Path(__file__).resolve().parent.parent
SURVEY = "SimulatedSurvey"
IMBALANCED_SUFFIX = "-imbalanced"
DATASETS = (*AEON_SETS, *(name + IMBALANCED_SUFFIX for name in AEON_SETS), SURVEY)
METHODS = ("defaults", "original", "gradient_boosting", "minirocket")
SEEDS = (1, 2, 3)
FIGURES = ("accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc")
# Facts of the data, not tuning: the survey's column 0 is time in days and it has
# contextual features; aeon's sets have none.
SURVEY_SETTINGS = {"time_column": 0}
AEON_SETTINGS = {"mixed": False}
# A fifth of the default survey's variable stars, every rare curve: the same 1:100
# imbalance against each rare class, at a cost that keeps the suite under 2 hours.
# benchmarks/simulated_survey.py measures the full-size survey.
SURVEY_COUNTS = {"n_vs": 5000, "n_sn": 240, "n_agn": 250}


def log(message: str) -> None:
    print(message, flush=True)


def prepare(name: str, work_dir: Path) -> Path:
    """The data-contract folder of dataset `name`, written under work_dir once."""
    folder = work_dir / "data" / name
    if (folder / "test_labels.npy").exists():
        return folder
    if name == SURVEY:
        write_survey(folder, simulate_survey(**SURVEY_COUNTS))
    elif name.endswith(IMBALANCED_SUFFIX):
        imbalanced_variant(prepare(name[:-len(IMBALANCED_SUFFIX)], work_dir), folder)
    else:
        write_aeon_set(name, folder)
    return folder


def data_settings(name: str) -> dict:
    return SURVEY_SETTINGS if name == SURVEY else AEON_SETTINGS


def run_classifier(config: TrainConfig, data_dir: Path, model_dir: Path) -> tuple[dict, float]:
    """Train `config`, score the test split; (metrics, training seconds)."""
    started = time.monotonic()
    train(config, data_dir, model_dir, overwrite=True, log=lambda line: None)
    seconds = time.monotonic() - started
    trained = load_trained_model(model_dir)
    test = load_dataset(data_dir, mixed=config.mixed, splits=("test",))["test"]
    proba = trained.predict_proba(test.time_features, test.contextual_features)
    return classification_metrics(test.labels, proba, trained.class_names), seconds


def run_gradient_boosting(data_dir: Path, mixed: bool, seed: int) -> tuple[dict, float]:
    dataset = load_dataset(data_dir, mixed=mixed)
    started = time.monotonic()
    proba = gradient_boosting_baseline(dataset["train"].arrays(), dataset["test"].arrays(),
                                       dataset.n_classes, seed=seed)
    seconds = time.monotonic() - started
    return classification_metrics(dataset["test"].labels, proba, dataset.class_names), seconds


def run_minirocket(data_dir: Path, settings: dict, seed: int) -> tuple[dict, float]:
    """MiniRocket on the time series scaled as the classifier's (z-score), padding at 0."""
    from aeon.classification.convolution_based import MiniRocketClassifier

    dataset = load_dataset(data_dir, mixed=False)
    scaler = Scaler.fit(dataset["train"], "standard", DEFAULTS.mask_value,
                        settings.get("time_column", DEFAULTS.time_column))

    def series(split) -> np.ndarray:
        scaled, _ = scaler.transform(split.time_features, None)
        scaled = np.where(scaled == DEFAULTS.mask_value, 0.0, scaled)
        return np.ascontiguousarray(scaled.transpose(0, 2, 1), dtype=np.float64)

    started = time.monotonic()
    classifier = MiniRocketClassifier(random_state=seed)
    classifier.fit(series(dataset["train"]), dataset["train"].labels)
    predicted = classifier.predict(series(dataset["test"])).astype(int)
    seconds = time.monotonic() - started
    proba = np.eye(dataset.n_classes)[predicted]
    metrics = classification_metrics(dataset["test"].labels, proba, dataset.class_names)
    metrics["macro_roc_auc"] = None  # hard labels: not comparable
    return metrics, seconds


def run_one(name: str, method: str, seed: int, variants: dict, work_dir: Path) -> dict:
    """One method on one dataset with one seed: its figures, seconds and per-class recall."""
    data_dir = prepare(name, work_dir)
    settings = data_settings(name)
    if method == "gradient_boosting":
        metrics, seconds = run_gradient_boosting(data_dir, settings.get("mixed", True), seed)
    elif method == "minirocket":
        metrics, seconds = run_minirocket(data_dir, settings, seed)
    else:
        metrics, seconds = run_classifier(method_config(method, variants, name, seed), data_dir,
                                          work_dir / "models" / name / method / str(seed))
    return {"seed": seed, **{figure: metrics[figure] for figure in FIGURES},
            "training_seconds": seconds,
            "recall": {class_name: values["recall"]
                       for class_name, values in metrics["per_class"].items()}}


def _one_thread() -> None:
    """Worker start: one compute thread, so parallel runs share the cores without contention."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _run_job(job: tuple) -> tuple[str, str, dict]:
    name, method, seed = job[:3]
    return name, method, run_one(*job)


def _run_all(jobs: list[tuple], processes: int):
    """Yields (dataset, method, run) as runs finish, in `processes` worker processes.

    With one process the run uses every core. Each worker computes on one
    thread: these models are too small for two
    threads to halve an epoch, so one run per core finishes the suite sooner,
    and each run's training seconds are those of one core.
    """
    import multiprocessing

    if processes <= 1:
        for job in jobs:
            yield _run_job(job)
        return
    # Spawned, not forked: TensorFlow's runtime does not survive a fork.
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_one_thread) as pool:
        yield from pool.imap_unordered(_run_job, jobs)


def _in_order(results: dict, methods: list[str]) -> dict:
    """Results with each dataset's methods in the order asked for (runs finish in any order)."""
    return {name: {method: measured[method] for method in methods if method in measured}
            for name, measured in results.items()}


def parse_variant(text: str) -> tuple[str, dict]:
    """NAME=KEY=VALUE[,KEY=VALUE...] into (NAME, {KEY: typed VALUE})."""
    name, _, assignments = text.partition("=")
    overrides = {}
    for assignment in filter(None, assignments.split(",")):
        key, _, value = assignment.partition("=")
        kind = field_type(key)
        overrides[key] = value.lower() in ("true", "1") if kind is bool else kind(value)
    DEFAULTS.replace(**overrides)  # unknown keys and bad values fail here, before any run
    return name, overrides


def method_config(method: str, variants: dict[str, dict], name: str, seed: int) -> TrainConfig:
    base = preset("original") if method == "original" else DEFAULTS.replace(
        **variants.get(method, {}))
    return base.replace(**data_settings(name), seed=seed)


def summarise(runs: list[dict]) -> dict:
    """Mean and sample standard deviation of each figure over seeds."""
    summary = {}
    for figure in (*FIGURES, "training_seconds"):
        values = [run[figure] for run in runs if run.get(figure) is not None]
        if values:
            summary[figure] = {"mean": float(np.mean(values)),
                               "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}
    return summary


TABLE_HEADER = f"{'dataset':<34} {'method':<18} " + " ".join(
    f"{name:>13}" for name in ("accuracy", "bal.accuracy", "macro-F1", "macro-AUC", "train s"))


def format_row(dataset: str, method: str, summary: dict) -> str:
    cells = []
    for figure in (*FIGURES, "training_seconds"):
        value = summary.get(figure)
        digits = 0 if figure == "training_seconds" else 3
        cells.append("n/c" if value is None else
                     f"{value['mean']:.{digits}f}+-{value['sd']:.{digits}f}")
    return f"{dataset:<34} {method:<18} " + " ".join(f"{cell:>13}" for cell in cells)


def markdown_table(results: dict) -> str:
    """The README's table: one row per dataset and method, mean +- sd over seeds."""
    lines = ["| dataset | method | accuracy | balanced accuracy | macro-F1 | macro ROC-AUC "
             "| training s |", "|---|---|---|---|---|---|---|"]
    for dataset, methods in results.items():
        for method, measured in methods.items():
            cells = []
            for figure in (*FIGURES, "training_seconds"):
                value = measured["summary"].get(figure)
                digits = 0 if figure == "training_seconds" else 3
                cells.append("n/c" if value is None else
                             f"{value['mean']:.{digits}f} ± {value['sd']:.{digits}f}")
            name = f"**{method}**" if method == "defaults" else method
            lines.append(f"| {dataset} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def acceptance(results: dict) -> dict:
    """The issue's checks: defaults >= gradient boosting per dataset; suite F1 >= MiniRocket."""
    misses = []
    for dataset, methods in results.items():
        if "defaults" not in methods or "gradient_boosting" not in methods:
            continue
        for figure in ("macro_f1", "balanced_accuracy", "macro_roc_auc"):
            ours = methods["defaults"]["summary"][figure]["mean"]
            theirs = methods["gradient_boosting"]["summary"][figure]["mean"]
            if ours < theirs:
                misses.append({"dataset": dataset, "figure": figure, "defaults": ours,
                               "gradient_boosting": theirs})
    suite = {method: float(np.mean([methods[method]["summary"]["macro_f1"]["mean"]
                                    for methods in results.values() if method in methods]))
             for method in {method for methods in results.values() for method in methods}}
    return {"misses_against_gradient_boosting": misses, "suite_mean_macro_f1": suite,
            "defaults_beat_minirocket_suite_mean": (
                suite["defaults"] >= suite["minirocket"]
                if {"defaults", "minirocket"} <= suite.keys() else None)}


def text_table(results: dict) -> list[str]:
    """The printed table's lines: the header, then one row per dataset and method."""
    return [TABLE_HEADER] + [format_row(dataset, method, measured["summary"])
                             for dataset, methods in results.items()
                             for method, measured in methods.items()]


def write_results(output: Path, seeds: list[int], variants: dict, results: dict,
                  ratios: dict[str, float], wall_seconds: float) -> dict:
    """Writes everything measured so far (a long run that dies keeps its rows); the checks.

    wall_seconds: how long this run has taken so far (the suite must run in under 2 hours).
    """
    checks = acceptance(results)
    lines = text_table(results)
    output.write_text(json.dumps({
        "command": "make bench-quality", "machine": machine(),
        "wall_seconds": round(wall_seconds, 1), "seeds": seeds,
        "survey_counts": SURVEY_COUNTS, "variants": variants, "defaults": DEFAULTS.to_dict(),
        "imbalance_ratios": ratios, "results": results, "acceptance": checks,
        "table": lines}, indent=1) + "\n")
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated, from {', '.join(DATASETS)}")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated, from " + ", ".join(METHODS)
                        + " and the names of --variant")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=KEY=VALUE[,KEY=VALUE]: the defaults with overrides")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--work-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "rnn-real-data")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "real_data.json")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="runs in parallel, one process and one thread each "
                             "(default: one per core)")
    parser.add_argument("--update", action="store_true",
                        help="keep the rows of an earlier --output that this run does not "
                             "measure (e.g. re-measure only the defaults after a change)")
    parser.add_argument("--markdown", action="store_true",
                        help="print an earlier run's --output as a Markdown table; run nothing")
    args = parser.parse_args()
    if args.markdown:
        print(markdown_table(json.loads(args.output.read_text())["results"]))
        return
    try:
        variants = dict(parse_variant(text) for text in args.variant)
    except (ConfigError, KeyError, ValueError) as error:
        raise SystemExit(f"error: --variant: {error}") from error
    datasets = args.datasets.split(",")
    methods = args.methods.split(",")
    unknown = sorted(set(datasets) - set(DATASETS)) + sorted(
        set(methods) - set(METHODS) - set(variants))
    if unknown:
        raise SystemExit(f"error: unknown dataset(s) or method(s): {unknown}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    started = time.monotonic()

    results: dict[str, dict] = {}
    ratios: dict[str, float] = {}  # most frequent / rarest class in each training split
    if args.update and args.output.exists():
        earlier = json.loads(args.output.read_text())
        results, ratios = earlier["results"], earlier["imbalance_ratios"]
        methods_in_order = list(dict.fromkeys(
            [*(method for measured in results.values() for method in measured), *methods]))
    else:
        methods_in_order = methods
    for name in datasets:
        ratios[name] = imbalance_ratio(prepare(name, args.work_dir))
        results.setdefault(name, {})
    jobs = [(name, method, seed, variants, args.work_dir)
            for name in datasets for method in methods for seed in seeds]
    log(f"{len(jobs)} runs, " + (f"{args.jobs} at a time, one thread each" if args.jobs > 1
                                 else "one at a time"))
    log(TABLE_HEADER)
    finished: dict[tuple[str, str], list[dict]] = {}
    for name, method, run in _run_all(jobs, args.jobs):
        runs = finished.setdefault((name, method), [])
        runs.append(run)
        if len(runs) < len(seeds):
            continue
        runs.sort(key=lambda one: one["seed"])
        results[name][method] = {"runs": runs, "summary": summarise(runs),
                                 "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        log(format_row(name, method, results[name][method]["summary"]))
        write_results(args.output, seeds, variants, _in_order(results, methods_in_order), ratios,
                      time.monotonic() - started)
    results = _in_order(results, methods_in_order)
    checks = write_results(args.output, seeds, variants, results, ratios,
                           time.monotonic() - started)
    log("\nsuite mean macro-F1: " + ", ".join(
        f"{method} {value:.3f}" for method, value in sorted(checks["suite_mean_macro_f1"].items())))
    for miss in checks["misses_against_gradient_boosting"]:
        log(f"below gradient boosting: {miss['dataset']} {miss['figure']} "
            f"{miss['defaults']:.3f} < {miss['gradient_boosting']:.3f}")
    log(f"{(time.monotonic() - started) / 60:.1f} minutes; wrote {args.output}")


if __name__ == "__main__":
    main()
