"""Performance: time-to-accuracy, inference throughput and pipeline overhead.

    make bench                                     # all three sections, ~40 min on 2 cores
    .venv/bin/python benchmarks/performance.py --sections inference --curves 200000

Prints one table per section and writes every figure to
benchmarks/results.json, each section with the machine and date it ran on.
Each measurement runs in its own process, so peak memory is that
measurement's alone; ratios are between measurements of the same run, on the
same machine and data.

- training: the original project's configuration (batch 32, learning rate
  1e-4, every batch padded to the longest curve, no early stopping) against
  this project's defaults, both on the default simulated survey: wall time
  until the validation macro ROC-AUC first reaches the target, training
  samples per second, and the final test macro ROC-AUC. One extra row, the
  defaults with length bucketing (3 epochs), shows what bucketing is worth in
  speed.
- inference: light curves per second and peak memory of `predict` (memory-
  mapped input, CSV output) at several batch sizes on a survey-sized input,
  against plain `model.predict` on the same data held in memory; and
  `predict` with XLA switched off, to show what compilation is worth.
- pipeline: `make demo`'s two commands (compile, then the pipeline under
  kfp.local, cache off) timed whole, minus the time inside its train and
  evaluate steps.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rnn_classifier.cli import flag_name
from rnn_classifier.config import PRESETS
from rnn_classifier.data import iter_chunks

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECTIONS = ("training", "inference", "pipeline")
# Both runs train on the simulated survey's time column as time between observations.
DATA_SETTINGS = {"time_column": 0}
# The original project's configuration (config.PRESETS["original"]): no early
# stopping, a fixed number of epochs.
TRAINING_RUNS = {
    "original configuration": PRESETS["original"],
    "defaults": {},
}
ABLATION_EPOCHS = 3
ABLATIONS = {"defaults with length buckets": {"bucket_by_length": True,
                                             "epochs": ABLATION_EPOCHS}}
TARGET_VAL_MACRO_AUC = 0.95
SECONDARY_TARGETS = (0.75, 0.85, 0.90, 0.95, 0.98)
INFERENCE_CURVES = 1_000_000
NIGHT_CURVES = 10_000_000  # a night of a Rubin-scale survey
BATCH_SIZES = (1024, 4096, 8192, 16384)
KERNEL_HEAD_RUN = "defaults without a time column (2 epochs, for inference only)"


def log(message: str) -> None:
    print(message, flush=True)


def machine() -> dict:
    """What the figures were measured on."""
    import tensorflow as tf

    model_name = next((line.split(":", 1)[1].strip() for line in
                       Path("/proc/cpuinfo").read_text().splitlines()
                       if line.startswith("model name")), platform.processor())
    return {"cpu": model_name, "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2**30, 1),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "gpu": bool(tf.config.list_physical_devices("GPU")),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def run_streaming(command: list[str], log_file: Path, prefix: str) -> float:
    """Run `command`, echoing its epoch/progress lines; return its wall seconds."""
    started = time.monotonic()
    with log_file.open("w") as stream:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            stream.write(line)
            if " epoch=" in line or line.startswith(("best epoch", "wrote", "test-set")):
                log(f"  [{prefix}] {line.rstrip()[:150]}")
        if process.wait() != 0:
            raise SystemExit(f"error: {' '.join(command)} failed; see {log_file}")
    return time.monotonic() - started


def flag_arguments(settings: dict) -> list[str]:
    """`train` command-line flags for config overrides."""
    arguments = []
    for name, value in settings.items():
        flag = flag_name(name)
        arguments += [f"{flag}={str(value).lower()}"] if isinstance(value, bool) else [
            flag, str(value)]
    return arguments


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------

def ensure_survey(workdir: Path) -> Path:
    """The default simulated survey (seed 0), written once under workdir."""
    from rnn_classifier.simulate import simulate_survey, write_survey

    survey_dir = workdir / "survey"
    if not (survey_dir / "test_labels.npy").exists():
        log(f"simulating the default survey into {survey_dir}")
        write_survey(survey_dir, simulate_survey())
    return survey_dir


def train_run(name: str, settings: dict, survey_dir: Path, workdir: Path) -> Path:
    """Train one configuration with the real CLI; return its model folder."""
    model_dir = workdir / "models" / name.replace(" ", "_").replace(",", "")
    command = [PYTHON, "-m", "rnn_classifier.cli", "train", "--data-dir", str(survey_dir),
               "--output-dir", str(model_dir), "--overwrite",
               *flag_arguments({**DATA_SETTINGS, **settings})]
    log(f"training: {name} {settings or '(defaults)'}")
    run_streaming(command, workdir / f"train-{model_dir.name}.log", name)
    return model_dir


def training_figures(model_dir: Path, survey_dir: Path, target: float) -> dict:
    """Time to target, samples per second, best epoch and test macro AUC of one run."""
    from rnn_classifier.data import load_dataset
    from rnn_classifier.evaluate import classification_metrics
    from rnn_classifier.predict import load_trained_model

    with (model_dir / "history.csv").open() as stream:
        history = [{key: float(value) for key, value in row.items()}
                   for row in csv.DictReader(stream)]
    elapsed = [row["elapsed_seconds"] for row in history]
    epoch_seconds = np.diff([0.0, *elapsed])
    reached = next((row for row in history if row["val_macro_auc"] >= target), None)
    seconds_to = {f"{level:.2f}": next((row["elapsed_seconds"] for row in history
                                        if row["val_macro_auc"] >= level), None)
                  for level in SECONDARY_TARGETS}
    dataset = load_dataset(survey_dir)
    trained = load_trained_model(model_dir)
    test = dataset["test"]
    proba = trained.predict_proba(test.time_features, test.contextual_features)
    test_auc = classification_metrics(test.labels, proba, dataset.class_names)["macro_roc_auc"]
    metrics = json.loads((model_dir / "training_metrics.json").read_text())
    return {
        "epochs_run": len(history), "best_epoch": metrics["best_epoch"],
        "training_seconds": elapsed[-1],
        "seconds_to_target": None if reached is None else reached["elapsed_seconds"],
        "epochs_to_target": None if reached is None else int(reached["epoch"]),
        "seconds_to_auc": seconds_to,
        "median_epoch_seconds": float(np.median(epoch_seconds)),
        "samples_per_second": len(dataset["train"]) / float(np.median(epoch_seconds)),
        "best_val_macro_auc": max(row["val_macro_auc"] for row in history),
        "test_macro_roc_auc": test_auc,
    }


def bench_training(workdir: Path, target: float) -> dict:
    """Train the original configuration, the defaults and the ablations; compare them."""
    survey_dir = ensure_survey(workdir)
    results = {"target_val_macro_auc": target, "runs": {}}
    for name, settings in {**TRAINING_RUNS, **ABLATIONS}.items():
        model_dir = train_run(name, settings, survey_dir, workdir)
        results["runs"][name] = {"settings": {**DATA_SETTINGS, **settings},
                                 **training_figures(model_dir, survey_dir, target)}
    original = results["runs"]["original configuration"]
    defaults = results["runs"]["defaults"]
    # An original run that never reaches the target gives a lower bound on the ratio.
    original_time = original["seconds_to_target"] or original["training_seconds"]
    results["time_to_target_ratio"] = (None if not defaults["seconds_to_target"] else
                                       original_time / defaults["seconds_to_target"])
    results["ratio_is_lower_bound"] = original["seconds_to_target"] is None
    results["samples_per_second_ratio"] = (defaults["samples_per_second"]
                                           / original["samples_per_second"])
    results["test_auc_difference"] = (defaults["test_macro_roc_auc"]
                                      - original["test_macro_roc_auc"])
    return results


def print_training(results: dict) -> None:
    """The training table and ratios."""
    target = results["target_val_macro_auc"]
    log(f"\nTraining on the default simulated survey (target validation macro ROC-AUC "
        f"{target})")
    log(f"{'run':<32} {'to target':>10} {'epochs':>7} {'samples/s':>10} {'epoch s':>8} "
        f"{'best val AUC':>13} {'test AUC':>9}")
    for name, run in results["runs"].items():
        to_target = ("not reached" if run["seconds_to_target"] is None
                     else f"{run['seconds_to_target']:.0f} s")
        epochs = "-" if run["epochs_to_target"] is None else str(run["epochs_to_target"])
        log(f"{name:<32} {to_target:>10} {epochs:>7} {run['samples_per_second']:>10.0f} "
            f"{run['median_epoch_seconds']:>8.1f} {run['best_val_macro_auc']:>13.4f} "
            f"{run['test_macro_roc_auc']:>9.4f}")
    log("seconds to reach validation macro ROC-AUC " + ", ".join(
        f"{level}" for level in SECONDARY_TARGETS))
    for name, run in results["runs"].items():
        log(f"  {name:<32} " + "  ".join(
            "   -" if value is None else f"{value:4.0f}"
            for value in run["seconds_to_auc"].values()))
    ratio = results["time_to_target_ratio"]
    bound = ">= " if results["ratio_is_lower_bound"] else ""
    log(f"time-to-target ratio original/defaults: {bound}"
        f"{'n/a' if ratio is None else f'{ratio:.1f}x'}; samples/s ratio defaults/original: "
        f"{results['samples_per_second_ratio']:.1f}x; test AUC difference "
        f"{results['test_auc_difference']:+.4f}")


# --------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------

def ensure_inference_data(workdir: Path, survey_dir: Path, curves: int) -> Path:
    """`curves` light curves: the survey's test split repeated, memory-mapped on disk."""
    data_dir = workdir / f"inference-{curves}"
    if (data_dir / "test_labels.npy").exists():
        return data_dir
    log(f"writing {curves} light curves (the test split repeated) to {data_dir}")
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("time_features", "contextual_features", "labels"):
        source = np.load(survey_dir / f"test_{name}.npy", mmap_mode="r")
        target = np.lib.format.open_memmap(data_dir / f"test_{name}.npy.tmp", mode="w+",
                                           dtype=source.dtype, shape=(curves, *source.shape[1:]))
        for rows in iter_chunks(curves, len(source)):
            target[rows] = source[:rows.stop - rows.start]
        target.flush()
        del target
        os.replace(data_dir / f"test_{name}.npy.tmp", data_dir / f"test_{name}.npy")
    (data_dir / "classes.txt").write_text((survey_dir / "classes.txt").read_text())
    return data_dir


def memory_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process in MB.

    Not getrusage's ru_maxrss: that survives exec, so a worker started from
    this (large) process would report the parent's size as its own peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(args) -> None:
    """One inference measurement in this process; prints a JSON line."""
    from rnn_classifier.predict import (
        load_split_for_prediction,
        load_trained_model,
        write_predictions,
    )

    trained = load_trained_model(args.model_dir)
    trained.batch_size = args.batch_size
    if args.xla != "auto":
        trained.predictor().jit_compile = args.xla == "on"
    rss_before = memory_mb("VmRSS")
    passes = []
    for _ in range(2):  # the first pass compiles; the second shows the steady state
        started = time.monotonic()
        if args.worker == "predict":
            with_output = Path(args.output)
            rows = write_predictions(trained, args.data_dir, "test", with_output)
            with_output.unlink()
        else:
            # The baseline: the whole split in memory, scaled, then one model.predict call.
            from rnn_classifier.model import model_inputs

            time_features, context = load_split_for_prediction(trained, args.data_dir, "test")
            inputs = model_inputs(*trained.scaler.transform(np.asarray(time_features),
                                                            None if context is None
                                                            else np.asarray(context)))
            rows = len(trained.model.predict(inputs, batch_size=args.batch_size, verbose=0))
            del inputs
        passes.append(time.monotonic() - started)
        if args.worker == "baseline":
            break  # model.predict compiles almost nothing: one pass is its figure
    print(json.dumps({"rows": rows, "seconds": passes[0], "warm_seconds": passes[-1],
                      "peak_rss_mb": memory_mb("VmHWM"),
                      "rss_after_model_load_mb": rss_before}))


def measure(kind: str, model_dir: Path, data_dir: Path, batch_size: int, workdir: Path,
            xla: str = "auto") -> dict:
    """Run one inference measurement in a fresh process (`worker`); return its figures."""
    command = [PYTHON, __file__, "--worker", kind, "--model-dir", str(model_dir),
               "--data-dir", str(data_dir), "--batch-size", str(batch_size), "--xla", xla,
               "--output", str(workdir / "predictions.csv")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["curves_per_second"] = figures["rows"] / figures["seconds"]
    figures["warm_curves_per_second"] = figures["rows"] / figures["warm_seconds"]
    log(f"  {kind:<9} batch {batch_size:>6} xla {xla:<4} {figures['curves_per_second']:>9.0f} "
        f"curves/s (second pass {figures['warm_curves_per_second']:.0f})  peak "
        f"{figures['peak_rss_mb']:.0f} MB")
    return figures


def default_model(workdir: Path, survey_dir: Path) -> Path:
    """The defaults' model from the training section, else a short default run."""
    model_dir = workdir / "models" / "defaults"
    if not (model_dir / "model.keras").exists():
        # Throughput does not depend on how well the weights are trained.
        model_dir = train_run("defaults (2 epochs, for inference only)", {"epochs": 2},
                              survey_dir, workdir)
    return model_dir


def bench_inference(workdir: Path, curves: int, batch_sizes: tuple[int, ...]) -> dict:
    """predict and model.predict at each batch size, and predict without XLA."""
    survey_dir = ensure_survey(workdir)
    model_dir = default_model(workdir, survey_dir)
    data_dir = ensure_inference_data(workdir, survey_dir, curves)
    log(f"inference on {curves} light curves with {model_dir}")
    results = {"curves": curves, "predict": {}, "model.predict": {}}
    for batch_size in batch_sizes:
        results["predict"][batch_size] = measure("predict", model_dir, data_dir, batch_size,
                                                 workdir)
        results["model.predict"][batch_size] = measure("baseline", model_dir, data_dir,
                                                       batch_size, workdir)
    best = max(batch_sizes, key=lambda size: results["predict"][size]["curves_per_second"])
    results["predict, XLA off"] = {best: measure("predict", model_dir, data_dir, best,
                                                 workdir, xla="off")}
    # Light curves with a time column get no random-kernel head; equally sampled series
    # do. The same curves read without a time column show what the head costs.
    kernel_model_dir = train_run(KERNEL_HEAD_RUN, {"epochs": 2, "time_column": -1},
                                 survey_dir, workdir)
    results["predict, random-kernel head"] = {best: measure("predict", kernel_model_dir,
                                                            data_dir, best, workdir)}
    baseline_best = max(value["curves_per_second"] for value in results["model.predict"].values())
    results["best_batch_size"] = best
    results["best_curves_per_second"] = results["predict"][best]["curves_per_second"]
    results["ratio_to_model_predict"] = results["best_curves_per_second"] / baseline_best
    results["xla_ratio"] = (results["best_curves_per_second"]
                            / results["predict, XLA off"][best]["curves_per_second"])
    # A night of 10 million alerts: compile once (first pass minus second), then stream.
    figures = results["predict"][best]
    results["night_seconds_estimate"] = (figures["seconds"] - figures["warm_seconds"]
                                         + NIGHT_CURVES / figures["warm_curves_per_second"])
    return results


def print_inference(results: dict) -> None:
    """The inference table and ratios."""
    log(f"\nInference on {results['curves']} simulated light curves (default model)")
    log(f"{'method':<22} {'batch':>6} {'curves/s':>10} {'2nd pass':>10} {'peak MB':>8}")
    for method in ("predict", "model.predict", "predict, XLA off",
                   "predict, random-kernel head"):
        for batch_size, figures in results.get(method, {}).items():
            log(f"{method:<22} {batch_size:>6} {figures['curves_per_second']:>10.0f} "
                f"{figures['warm_curves_per_second']:>10.0f} {figures['peak_rss_mb']:>8.0f}")
    night = results["night_seconds_estimate"]
    log(f"best predict: {results['best_curves_per_second']:.0f} curves/s at batch "
        f"{results['best_batch_size']} (first pass, compilation included); "
        f"{results['ratio_to_model_predict']:.1f}x the best model.predict; XLA worth "
        f"{results['xla_ratio']:.1f}x; 10 million curves in ~{night:.0f} s")


# --------------------------------------------------------------------------
# Pipeline overhead
# --------------------------------------------------------------------------

def bench_pipeline(workdir: Path) -> dict:
    """make demo's commands timed whole, against the time inside train and evaluate."""
    import shlex

    survey_dir = ensure_survey(workdir)
    pipeline_file = workdir / "training_pipeline.yaml"
    pipeline_root = workdir / "pipeline_root"
    demo_settings = subprocess.run(["make", "-s", "-f", "Makefile", "print-DEMO_SETTINGS"],
                                   cwd=ROOT, capture_output=True, text=True, check=True)
    settings = shlex.split(demo_settings.stdout.strip())
    log(f"pipeline: compile, then run under kfp.local (cache off) with {settings}")
    started = time.monotonic()
    run_streaming([PYTHON, "-m", "pipelines.compile", "--output", str(pipeline_file)],
                  workdir / "compile.log", "compile")
    run_streaming([PYTHON, "-m", "pipelines.run_local", "--pipeline", str(pipeline_file),
                   "--data-uri", str(survey_dir), "--pipeline-root", str(pipeline_root),
                   "--no-cache", *settings], workdir / "pipeline.log", "pipeline")
    total = time.monotonic() - started
    runs = sorted(pipeline_root.iterdir(), key=lambda path: path.stat().st_mtime)
    step_seconds = {}
    for step, output in (("train", "metrics"), ("evaluate", "metrics")):
        metrics = json.loads((runs[-1] / step / output).read_text())
        step_seconds[step] = metrics["step_seconds"]
    inside = sum(step_seconds.values())
    return {"total_seconds": total, "train_step_seconds": step_seconds["train"],
            "evaluate_step_seconds": step_seconds["evaluate"],
            "overhead_seconds": total - inside, "overhead_fraction": (total - inside) / total}


def print_pipeline(results: dict) -> None:
    """The pipeline overhead line."""
    log("\nPipeline (make demo: compile + kfp.local run, cache off)")
    log(f"total {results['total_seconds']:.0f} s = train step "
        f"{results['train_step_seconds']:.0f} s + evaluate step "
        f"{results['evaluate_step_seconds']:.0f} s + overhead "
        f"{results['overhead_seconds']:.0f} s ({100 * results['overhead_fraction']:.0f}%)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--target-auc", type=float, default=TARGET_VAL_MACRO_AUC)
    parser.add_argument("--curves", type=int, default=INFERENCE_CURVES,
                        help="light curves classified per inference measurement")
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    # The inference worker (one measurement per process, for a clean peak memory).
    parser.add_argument("--worker", choices=("predict", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--xla", choices=("auto", "on", "off"), default="auto",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    sections = args.sections.split(",")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; expected some of {list(SECTIONS)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    # Sections not rerun keep their previous figures in results.json; each section
    # records the machine and date it was measured on.
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    printers = {"training": print_training, "inference": print_inference,
                "pipeline": print_pipeline}
    for section in SECTIONS:
        if section not in sections:
            continue
        if section == "training":
            results[section] = bench_training(args.workdir, args.target_auc)
        elif section == "inference":
            results[section] = bench_inference(
                args.workdir, args.curves, tuple(int(size) for size in
                                                 args.batch_sizes.split(",")))
        else:
            results[section] = bench_pipeline(args.workdir)
        results[section]["machine"] = machine()
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    for section in SECTIONS:
        if section in results:
            printers[section](results[section])
            log(f"measured on: {results[section].get('machine', 'not recorded')}")
    log(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
