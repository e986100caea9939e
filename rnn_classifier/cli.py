"""The `rnn-classifier` command: simulate | validate | train | evaluate | predict | grid.

Every `train` flag is derived from `TrainConfig` (`--rnn-units` for
`rnn_units`...), so the CLI, the YAML config, the pipeline and the Katib
trials can never drift apart. Bad input prints one `error:` line naming the
file and the problem, and exits with status 2 having written nothing.

Every `--data-dir`, `--output-dir` and `--model-dir` (and `predict --output`)
may be a `gs://BUCKET/PATH`: inputs are downloaded to a temporary folder,
outputs written to one and uploaded only when the command succeeds (see
`rnn_classifier.storage`). Cloud Storage failing after its retries prints
one `error:` line and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rnn_classifier import config as config_module
from rnn_classifier.config import PREDICT_BATCH_SIZE, ConfigError, TrainConfig
from rnn_classifier.data import DataError

EXIT_BAD_INPUT = 2
EXIT_STORAGE = 1
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below the minimum 1")
    return value


def parse_bool(text: str) -> bool:
    """'true'/'false' (and yes/no, 1/0, on/off), as Katib substitutes them."""
    lowered = text.lower()
    if lowered in TRUE_WORDS | FALSE_WORDS:
        return lowered in TRUE_WORDS
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def flag_name(field: str) -> str:
    """Config field -> CLI flag: `rnn_units` -> `--rnn-units`."""
    return "--" + field.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; only flags actually given reach the config."""
    group = parser.add_argument_group("hyperparameters (override --config)")
    for field in config_module.field_names():
        meta = config_module.field_metadata(field)
        kind = config_module.field_type(field)
        default = getattr(config_module.DEFAULTS, field)
        help_text = f"{meta['help']} (default: {default})"
        if kind is bool:
            # `--mixed`, `--mixed=false` (Katib's form) and `--no-mixed` all work.
            group.add_argument(flag_name(field), dest=field, nargs="?", const=True,
                               type=parse_bool, default=argparse.SUPPRESS, help=help_text,
                               metavar="BOOL")
            group.add_argument(f"--no-{field.replace('_', '-')}", dest=field,
                               action="store_false", default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS)
        else:
            group.add_argument(flag_name(field), dest=field, type=kind,
                               choices=meta["choices"], default=argparse.SUPPRESS,
                               help=help_text)


def add_preset_flag(parser: argparse.ArgumentParser) -> None:
    """`--preset NAME`: start from a named configuration instead of the defaults."""
    parser.add_argument("--preset", choices=sorted(config_module.PRESETS),
                        help="start from a named configuration (original: the original "
                        "project's model and training); --config and flags override it")


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults <- --preset <- --config file <- explicit flags."""
    base = config_module.preset(args.preset) if args.preset else TrainConfig()
    config = TrainConfig.load(args.config, base) if args.config else base
    overrides = {field: getattr(args, field) for field in config_module.field_names()
                 if hasattr(args, field)}
    return config.replace(**overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnn-classifier", allow_abbrev=False,
        description="Recurrent-network classifier for imbalanced time series.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        # No abbreviations: `--rnn-unit` must be an error, not a guess at `--rnn-units`.
        return commands.add_parser(name, help=help, allow_abbrev=False)

    simulate = command("simulate", "write the simulated GOTO-like survey")
    simulate.add_argument("--output-dir", required=True, help="folder or gs://BUCKET/PATH")
    simulate.add_argument("--n-vs", type=int, help="variable stars")
    simulate.add_argument("--n-sn", type=int, help="supernovae")
    simulate.add_argument("--n-agn", type=int, help="active galactic nuclei")
    simulate.add_argument("--seed", type=int, default=0)

    validate = command("validate", "check a data folder against the contract")
    validate.add_argument("--data-dir", required=True, help="folder or gs://BUCKET/PATH")
    validate.add_argument("--no-mixed", dest="mixed", action="store_false",
                          help="time series only: no contextual feature files")
    validate.add_argument("--mask-value", type=float, default=config_module.DEFAULTS.mask_value)

    train = command("train", "train one model")
    train.add_argument("--data-dir", required=True, help="folder or gs://BUCKET/PATH")
    train.add_argument("--output-dir", required=True,
                       help="model folder or gs://BUCKET/PATH (trained locally, then uploaded)")
    train.add_argument("--config", type=Path, help="YAML/JSON file of config fields")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from its last checkpoint")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a model or checkpoint already in --output-dir")
    add_preset_flag(train)
    add_config_flags(train)

    evaluate = command("evaluate", "metrics, figures and report.html, of one model or a grid")
    evaluate.add_argument("--data-dir", required=True, help="folder or gs://BUCKET/PATH")
    evaluate.add_argument("--model-dir", required=True,
                          help="a model folder, or a grid folder (one sub-folder per model, as "
                          "grid writes): every model is evaluated and compared in "
                          "experiment_results.csv and comparison.html; folder or gs://BUCKET/PATH")
    evaluate.add_argument("--output-dir",
                          help="default: MODEL_DIR/evaluation; for a grid folder, each model's "
                          "MODEL/evaluation and the comparison in the grid folder (given: "
                          "OUTPUT_DIR/MODEL and OUTPUT_DIR)")
    evaluate.add_argument("--label", action="append", dest="labels", metavar="NAME",
                          help="a class name, in label order; repeat it for each class "
                          "(default: the model's classes.txt)")

    predict = command("predict", "class probabilities as CSV")
    predict.add_argument("--model-dir", required=True, help="folder or gs://BUCKET/PATH")
    predict.add_argument("--data-dir", required=True, help="folder or gs://BUCKET/PATH")
    predict.add_argument("--split", default="test")
    predict.add_argument("--output", required=True, help="CSV file or gs://BUCKET/PATH.csv")
    predict.add_argument("--batch-size", type=_positive_int, default=PREDICT_BATCH_SIZE,
                         help="light curves per inference batch (default %(default)s)")

    grid = command("grid", "train a grid of models (the original workflow)")
    grid.add_argument("--data-dir", required=True, help="folder or gs://BUCKET/PATH")
    grid.add_argument("--config", required=True, type=Path, help="grid YAML")
    grid.add_argument("--output-dir", default="trained_models",
                      help="folder or gs://BUCKET/PATH (default: trained_models)")
    grid.add_argument("--rnn", default="gru", help="comma-separated: gru,lstm")
    grid.add_argument("--loss", default="focal", help="comma-separated: focal,wce,ce")
    grid.add_argument("--no-mixed", dest="mixed", action="store_false")
    add_preset_flag(grid)

    sweep = command("sweep", "run a Katib Experiment's trials locally (same manifest, same CLI)")
    sweep.add_argument("--experiment", required=True, type=Path, help="Katib Experiment YAML")
    sweep.add_argument("--data-dir", required=True,
                       help="data folder or gs://BUCKET/PATH (downloaded once; replaces the "
                       "trial command's --data-dir)")
    sweep.add_argument("--output-dir", required=True,
                       help="trials.csv, best.json and trials/<n>/model go here (folder or "
                       "gs://BUCKET/PATH, uploaded when the sweep ends)")
    sweep.add_argument("--max-trials", type=int, help="default: the manifest's maxTrialCount")
    sweep.add_argument("--parallel", type=int,
                       help="trials at once (default: the manifest's parallelTrialCount)")
    sweep.add_argument("--seed", type=int,
                       help="sampler seed (default: the algorithm's random_state, else 0)")

    # Imported here: rnn_classifier.katib imports this module (flag_name).
    from rnn_classifier import katib as katib_module
    from rnn_classifier import search_space

    katib = command("katib", "write or check the Katib Experiment of the hyperparameter sweep")
    katib_actions = katib.add_subparsers(dest="katib_command", required=True, metavar="ACTION")
    katib_validate = katib_actions.add_parser(
        "validate", allow_abbrev=False,
        help="check a Katib Experiment strictly (schema, Katib's webhook rules, the trial Job)")
    katib_validate.add_argument("file", type=Path)
    manifest = katib_actions.add_parser(
        "manifest", allow_abbrev=False, help="write the Experiment manifest (validated first)")
    manifest.add_argument("--output", required=True, type=Path)
    manifest.add_argument("--image", default=katib_module.DEFAULT_IMAGE)
    manifest.add_argument("--data-uri", default=katib_module.DEFAULT_DATA_URI,
                          help="gs://BUCKET/PATH of the data folder")
    manifest.add_argument("--namespace", default=katib_module.DEFAULT_NAMESPACE)
    manifest.add_argument("--name", default=katib_module.DEFAULT_NAME)
    manifest.add_argument("--algorithm", default=search_space.DEFAULT_ALGORITHM,
                          choices=katib_module.BUILD_ALGORITHMS)
    manifest.add_argument("--max-trials", type=int, default=search_space.DEFAULT_MAX_TRIALS)
    manifest.add_argument("--parallel-trials", type=int,
                          default=search_space.DEFAULT_PARALLEL_TRIALS)
    manifest.add_argument("--max-failed-trials", type=int,
                          default=search_space.DEFAULT_MAX_FAILED_TRIALS)
    manifest.add_argument("--epochs", type=int, help="fix every trial's --epochs")
    manifest.add_argument("--gpu", type=parse_bool, default=True, metavar="BOOL",
                          help="request one nvidia.com/gpu per trial (default: true)")
    return parser


def _data_files(splits: tuple[str, ...] | None = None) -> list[str]:
    """The contract files worth downloading from a gs:// data folder."""
    from rnn_classifier.data import SPLITS
    from rnn_classifier.steps import contract_file_names

    wanted = SPLITS if splits is None else splits
    return [name for name in contract_file_names(mixed=True)
            if not name.endswith(".npy") or name.split("_", 1)[0] in wanted]


def run_simulate(args) -> None:
    from rnn_classifier.simulate import DEFAULT_COUNTS, simulate_survey, write_survey
    from rnn_classifier.storage import is_gcs, list_files, local_output

    given = {"VS": args.n_vs, "SN": args.n_sn, "AGN": args.n_agn}
    counts = {f"n_{name.lower()}": DEFAULT_COUNTS[name] if value is None else value
              for name, value in given.items()}
    occupied = (list_files(args.output_dir) if is_gcs(args.output_dir)
                else Path(args.output_dir).exists() and any(Path(args.output_dir).iterdir()))
    if occupied:
        raise DataError(f"{args.output_dir}: folder exists and is not empty; choose another "
                        "--output-dir")
    with local_output(args.output_dir) as output_dir:
        write_survey(output_dir, simulate_survey(seed=args.seed, **counts))
    print(f"wrote the simulated survey ({counts}) to {args.output_dir}")


def run_validate(args) -> None:
    from rnn_classifier.data import load_dataset, summarise
    from rnn_classifier.storage import local_input

    with local_input(args.data_dir, _data_files()) as data_dir:
        dataset = load_dataset(data_dir, mixed=args.mixed, mask_value=args.mask_value)
        print(json.dumps(summarise(dataset, args.mask_value), indent=2))
    print(f"{args.data_dir}: valid")


def run_train(args) -> None:
    from rnn_classifier.storage import exists, is_gcs, join_uri, local_input, local_output
    from rnn_classifier.train import MODEL_FILE, TrainError, train

    config = resolve_config(args)
    if is_gcs(args.output_dir):
        # Checkpoints live in the local working copy, so a gs:// run cannot be resumed;
        # the other output checks are train()'s, made against the bucket.
        if args.resume:
            raise TrainError(f"{args.output_dir}: --resume needs a local --output-dir (a "
                             "gs:// run trains in a temporary folder and uploads the "
                             "finished model)")
        if not args.overwrite and exists(join_uri(args.output_dir, MODEL_FILE)):
            raise TrainError(f"{args.output_dir}: already holds a trained model; choose "
                             "another --output-dir or pass --overwrite")
    with local_input(args.data_dir, _data_files()) as data_dir, \
            local_output(args.output_dir, last=(MODEL_FILE,)) as output_dir:
        train(config, data_dir, output_dir, resume=args.resume, overwrite=args.overwrite)
    print(f"model written to {args.output_dir}")


def run_evaluate(args) -> None:
    from rnn_classifier.grid_evaluation import folder_kind, gcs_download_names
    from rnn_classifier.storage import is_gcs, list_files, local_input

    # A gs:// grid folder's models are one level down, which a plain download skips.
    names = gcs_download_names(list_files(args.model_dir)) if is_gcs(args.model_dir) else None
    with local_input(args.model_dir, names, recursive=names is not None) as model_dir:
        if folder_kind(model_dir) == "grid":
            _evaluate_grid(args, model_dir)
        else:
            _evaluate_model(args, model_dir)


def _evaluate_grid(args, grid_dir: Path) -> None:
    """Every model of a grid folder; exit status 2 (after writing the others) if any failed."""
    from rnn_classifier.grid_evaluation import COMPARISON_FILE, RESULTS_FILE, evaluate_grid
    from rnn_classifier.storage import join_uri, local_input, local_output

    output_uri = args.output_dir or args.model_dir
    with local_input(args.data_dir, _data_files(("validation", "test"))) as data_dir, \
            local_output(output_uri) as output_dir:
        outcome = evaluate_grid(grid_dir, data_dir, output_dir,
                                model_subfolder="" if args.output_dir else "evaluation",
                                labels=args.labels, grid_name=args.model_dir)
    results_uri = join_uri(output_uri, RESULTS_FILE)
    print(f"results: {results_uri}")
    print(f"comparison: {join_uri(output_uri, COMPARISON_FILE)}")
    if outcome.failed:
        # Raised only now, so that the other models' evaluations are kept (and uploaded).
        raise DataError(f"{len(outcome.failed)} of {len(outcome.results)} models in "
                        f"{args.model_dir} could not be evaluated "
                        f"({', '.join(result.name for result in outcome.failed)}); "
                        f"the reasons are in {results_uri}")


def _evaluate_model(args, model_dir: Path) -> None:
    from rnn_classifier.evaluate import evaluate_model
    from rnn_classifier.storage import join_uri, local_input, local_output

    output_uri = args.output_dir or join_uri(args.model_dir, "evaluation")
    with local_input(args.data_dir, _data_files(("validation", "test"))) as data_dir, \
            local_output(output_uri) as output_dir:
        metrics = evaluate_model(model_dir, data_dir, output_dir, labels=args.labels)
    for split in ("validation", "test"):
        figures = metrics[split]
        print(f"{split:>10}: accuracy={figures['accuracy']:.4f} "
              f"balanced_accuracy={figures['balanced_accuracy']:.4f} "
              f"macro_f1={figures['macro_f1']:.4f} macro_roc_auc={figures['macro_roc_auc']:.4f}")
    print(f"report: {join_uri(output_uri, 'report.html')}")


def run_predict(args) -> None:
    from rnn_classifier.predict import load_trained_model, write_predictions
    from rnn_classifier.storage import local_input, local_output_file

    with local_input(args.model_dir) as model_dir, \
            local_input(args.data_dir, _data_files((args.split,))) as data_dir, \
            local_output_file(args.output) as output:
        trained = load_trained_model(model_dir)
        trained.batch_size = args.batch_size
        rows = write_predictions(
            trained, data_dir, args.split, output,
            progress=lambda done, total: print(f"predicted {done}/{total}", file=sys.stderr))
    print(f"wrote {rows} predictions to {args.output}")


def run_grid(args) -> None:
    from rnn_classifier.grid import run_grid as grid
    from rnn_classifier.storage import local_input, local_output

    with local_input(args.data_dir, _data_files()) as data_dir, \
            local_output(args.output_dir) as output_dir:
        grid(data_dir, args.config, output_dir, args.rnn.split(","), args.loss.split(","),
             mixed=args.mixed, preset=args.preset)


def run_sweep(args) -> None:
    from rnn_classifier.storage import join_uri, local_input, local_output
    from rnn_classifier.sweep import load_experiment
    from rnn_classifier.sweep import run_sweep as sweep

    experiment = load_experiment(args.experiment)
    # The finished sweep is uploaded even when no trial succeeded: trials.csv says why.
    with local_input(args.data_dir, _data_files()) as data_dir, \
            local_output(args.output_dir) as output_dir:
        result = sweep(experiment, data_dir, output_dir, max_trials=args.max_trials,
                       parallel=args.parallel, seed=args.seed)
    if result.best is None:
        # Katib marks such an Experiment Failed; so does our exit status.
        print(f"error: no trial succeeded ({result.stopped_because}); see "
              f"{join_uri(args.output_dir, 'trials.csv')} and the trials' trial.log",
              file=sys.stderr)
        raise SystemExit(1)


def run_katib(args) -> None:
    from rnn_classifier import katib

    def fail_on(problems: list[str], source: Path, outcome: str) -> None:
        # One `error:` line per problem; main() prints the summary and exits 2.
        for problem in problems:
            print(f"error: {source}: {problem}", file=sys.stderr)
        if problems:
            raise ConfigError(f"{source}: {len(problems)} problem(s); {outcome}")

    if args.katib_command == "validate":
        fail_on(katib.validate_experiment(katib.load_manifest(args.file)), args.file,
                "not a valid Katib Experiment")
        print(f"{args.file}: valid")
        return
    experiment = katib.build_experiment(
        name=args.name, namespace=args.namespace, image=args.image, data_uri=args.data_uri,
        algorithm=args.algorithm, max_trials=args.max_trials,
        parallel_trials=args.parallel_trials, max_failed_trials=args.max_failed_trials,
        gpu=args.gpu, epochs=args.epochs)
    fail_on(katib.validate_experiment(experiment), args.output, "nothing written")
    katib.write_manifest(experiment, args.output)
    print(f"wrote {args.output} (valid)")


COMMANDS = {"simulate": run_simulate, "validate": run_validate, "train": run_train,
            "evaluate": run_evaluate, "predict": run_predict, "grid": run_grid,
            "sweep": run_sweep, "katib": run_katib}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rnn-classifier` console script; returns the exit status."""
    # TensorFlow's C++ start-up chatter hides the progress lines people need.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from rnn_classifier.storage import StorageError, StorageNotFound
    from rnn_classifier.train import TrainError

    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (DataError, ConfigError, TrainError, FileExistsError, StorageNotFound) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StorageError as error:
        # Cloud Storage itself failed (after its retries): not the input's fault.
        print(f"error: {error}", file=sys.stderr)
        return EXIT_STORAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
