"""Classifier quality on the simulated GOTO-like survey: prints a table of figures.

    .venv/bin/python benchmarks/simulated_survey.py --compare context
    .venv/bin/python benchmarks/simulated_survey.py --compare scaling
    .venv/bin/python benchmarks/simulated_survey.py --compare losses
    .venv/bin/python benchmarks/simulated_survey.py --compare batching --seeds 1,2,3
    .venv/bin/python benchmarks/simulated_survey.py --compare defaults --seeds 1,2,3

Each variant is trained on the same data with the default config plus its
overrides, once per seed (--seeds; default: the config's seed), then
evaluated on the test split. With several seeds, each variant also gets a
line of means and standard deviations over its seeds: differences between
variants smaller than that spread are noise. A logistic regression on
order-free summary statistics (plus the contextual features) is the
weak baseline: the survey is built so that it scores clearly below the RNN.
Gradient boosting on the same features (the real-data benchmark's strong
baseline) is the strong one, once per seed, at the operating point too.
The AUC-against-observations curves of all variants are drawn on one figure,
as in the GOTO paper, under --output-dir. Beside the argmax recalls, each
row gives every class's test recall at the operating point the GOTO paper
reports: the variable-star threshold set on the validation split to keep 95%
of them (rnn_classifier.evaluate.recall_at_majority_recall). Every run's
figures go to --output-dir/simulated_survey_<comparison>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from rnn_classifier.baselines import gradient_boosting_baseline
from rnn_classifier.config import DEFAULTS
from rnn_classifier.data import load_dataset
from rnn_classifier.evaluate import (
    classification_metrics,
    evaluate_model,
    plot_auc_vs_observations,
    recall_at_majority_recall,
)
from rnn_classifier.simulate import simulate_survey, summary_statistics_baseline, write_survey
from rnn_classifier.train import train

BASE = {"time_column": 0}  # the simulated survey's column 0 is time in days
COMPARISONS = {
    "context": {"gru-focal+context": {}, "gru-focal": {"mixed": False}},
    "scaling": {f"scaling={name}": {"scaling": name}
                for name in ("asinh", "robust", "standard", "none")},
    "time": {"time deltas": {}, "absolute time": {"time_column": -1}},
    "losses": {f"{rnn}-{loss}{suffix}": {"rnn_type": rnn, "loss": loss, "mixed": mixed}
               for rnn in ("gru", "lstm") for loss in ("focal", "wce", "ce")
               for suffix, mixed in (("+context", True), ("", False))},
    # The optimisation defaults against length bucketing and the earlier defaults.
    "defaults": {"defaults": {}},
    "batching": {"defaults": {}, "length buckets": {"bucket_by_length": True},
                 "batch 64, lr 1e-3": {"batch_size": 64, "learning_rate": 1e-3}},
}


# A baseline's curves (thousands of points each) are not kept: its figures are.
CURVES = ("roc_curves", "pr_curves", "reliability")


def logistic_regression_baseline(data_dir: Path, class_names: list[str]) -> dict:
    """Balanced logistic regression on summary statistics + contextual features."""
    dataset = load_dataset(data_dir)
    test = dataset["test"]
    proba = summary_statistics_baseline(dataset["train"].arrays(), test.arrays(),
                                        DEFAULTS.mask_value)
    return classification_metrics(test.labels, proba, class_names)


def gradient_boosting_run(data_dir: Path, class_names: list[str], seed: int) -> dict:
    """Gradient boosting on summary statistics + contextual features (the real-data
    benchmark's baseline): test figures and the recalls at the GOTO operating point."""
    dataset = load_dataset(data_dir)
    validation, test = dataset["validation"], dataset["test"]
    # One fit scores both splits: validation sets the operating point's threshold.
    both = {key: np.concatenate([validation.arrays()[key], test.arrays()[key]])
            for key in ("time_features", "contextual_features")}
    started = time.monotonic()
    proba = gradient_boosting_baseline(dataset["train"].arrays(), both, len(class_names),
                                       seed=seed, mask_value=DEFAULTS.mask_value)
    seconds = time.monotonic() - started
    validation_proba, test_proba = proba[:len(validation)], proba[len(validation):]
    figures = {key: value for key, value in
               classification_metrics(test.labels, test_proba, class_names).items()
               if key not in CURVES}
    return {**figures,
            "operating_point": recall_at_majority_recall(
                (validation.labels, validation_proba), (test.labels, test_proba), class_names),
            "seed": seed, "training_seconds": seconds}


def operating_recalls(point: dict | None) -> str:
    if not point:
        return "-"
    return "/".join(f"{value:.3f}" for value in point["recall"].values())


def row(name: str, metrics: dict, seconds: float | None, point: dict | None = None) -> str:
    recalls = " ".join(f"{value['recall']:.3f}" for value in metrics["per_class"].values())
    took = "" if seconds is None else f"{seconds:7.0f}"
    return (f"{name:<30} {metrics['macro_roc_auc']:.4f}  {metrics['balanced_accuracy']:.4f}  "
            f"{metrics['macro_f1']:.4f}  {recalls:<20} {operating_recalls(point):<20} {took}")


def spread_row(name: str, runs: list[dict]) -> str:
    """Mean +- standard deviation over seeds of the figures `row` prints."""
    def figure(values: list[float]) -> str:
        return f"{np.mean(values):.4f}+-{np.std(values, ddof=1):.4f}"

    recalls = " ".join(
        f"{np.mean([run['per_class'][class_name]['recall'] for run in runs]):.3f}"
        for class_name in runs[0]["per_class"])
    points = [run["operating_point"] for run in runs if run.get("operating_point")]
    mean_point = {"recall": {name: float(np.mean([point["recall"][name] for point in points]))
                             for name in points[0]["recall"]}} if points else None
    return (f"{name + ' (mean)':<30} {figure([run['macro_roc_auc'] for run in runs])}  "
            f"{figure([run['balanced_accuracy'] for run in runs])}  "
            f"{figure([run['macro_f1'] for run in runs])}  {recalls:<20} "
            f"{operating_recalls(mean_point)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=sorted(COMPARISONS), default="context")
    parser.add_argument("--data-dir", type=Path, help="default: simulate the default survey")
    parser.add_argument("--output-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "rnn-benchmark")
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    parser.add_argument("--seeds", default=str(DEFAULTS.seed),
                        help="comma-separated seeds; each variant is trained once per seed")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]

    data_dir = args.data_dir
    if data_dir is None:
        data_dir = args.output_dir / "survey"
        if not (data_dir / "train_labels.npy").exists():
            write_survey(data_dir, simulate_survey())
    class_names = load_dataset(data_dir, splits=("test",)).class_names
    header = f"{'variant':<30} {'AUC':<6}  {'bal.acc':<6}  {'mac.F1':<6}  recall " \
             f"{'/'.join(class_names):<13} {'at 95% ' + class_names[0] + ' recall':<20} seconds"
    lines = [header, row("logistic regression", logistic_regression_baseline(
        data_dir, class_names), None)]
    measured = {"gradient boosting": [gradient_boosting_run(data_dir, class_names, seed)
                                      for seed in seeds]}
    for run in measured["gradient boosting"]:
        label = "gradient boosting" + ("" if len(seeds) == 1 else f" (seed {run['seed']})")
        lines.append(row(label, run, run["training_seconds"], run["operating_point"]))
    if len(seeds) > 1:
        lines.append(spread_row("gradient boosting", measured["gradient boosting"]))
    print("\n".join(lines), flush=True)
    curves = {}
    for name, overrides in COMPARISONS[args.compare].items():
        runs = []
        for seed in seeds:
            config = DEFAULTS.replace(**{**BASE, "epochs": args.epochs, "seed": seed,
                                         **overrides})
            label = name if len(seeds) == 1 else f"{name} (seed {seed})"
            # Variant names hold spaces, commas, "+" and "=": keep a plain folder name.
            model_dir = (args.output_dir / args.compare
                         / re.sub(r"[^A-Za-z0-9.-]+", "_", name) / f"seed-{seed}")
            started = time.monotonic()
            train(config, data_dir, model_dir, overwrite=True, log=lambda line: None)
            seconds = time.monotonic() - started
            metrics = evaluate_model(model_dir, data_dir, model_dir / "evaluation",
                                     progress=lambda line: None)
            curves[label] = metrics["auc_vs_observations"]
            runs.append({**metrics["test"], "operating_point": metrics.get("operating_point"),
                         "seed": seed, "training_seconds": seconds})
            lines.append(row(label, metrics["test"], seconds, metrics.get("operating_point")))
            print(lines[-1], flush=True)
        measured[name] = runs
        if len(seeds) > 1:
            lines.append(spread_row(name, runs))
            print(lines[-1], flush=True)
    figure = plot_auc_vs_observations(curves, args.output_dir / f"auc_vs_obs_{args.compare}.png")
    (args.output_dir / f"simulated_survey_{args.compare}.json").write_text(json.dumps(
        {"data_dir": str(data_dir), "seeds": seeds, "runs": measured, "table": lines},
        indent=1, default=str) + "\n")
    print("\n".join(["", f"test split of {data_dir}", *lines, f"figure: {figure}"]))


if __name__ == "__main__":
    main()
