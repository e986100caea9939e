"""The `rnn-classifier` command: simulate | validate | train | evaluate | predict | grid.

Every `train` flag is derived from `TrainConfig` (`--rnn-units` for
`rnn_units`...), so the CLI, the YAML config, the pipeline and the Katib
trials can never drift apart. Bad input prints one `error:` line naming the
file and the problem, and exits with status 2 having written nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rnn_classifier import config as config_module
from rnn_classifier.config import ConfigError, TrainConfig
from rnn_classifier.data import DataError

EXIT_BAD_INPUT = 2
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


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


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults <- --config file <- explicit flags."""
    config = TrainConfig.load(args.config) if args.config else TrainConfig()
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
    simulate.add_argument("--output-dir", required=True, type=Path)
    simulate.add_argument("--n-vs", type=int, help="variable stars")
    simulate.add_argument("--n-sn", type=int, help="supernovae")
    simulate.add_argument("--n-agn", type=int, help="active galactic nuclei")
    simulate.add_argument("--seed", type=int, default=0)

    validate = command("validate", "check a data folder against the contract")
    validate.add_argument("--data-dir", required=True, type=Path)
    validate.add_argument("--no-mixed", dest="mixed", action="store_false",
                          help="time series only: no contextual feature files")
    validate.add_argument("--mask-value", type=float, default=config_module.DEFAULTS.mask_value)

    train = command("train", "train one model")
    train.add_argument("--data-dir", required=True, type=Path)
    train.add_argument("--output-dir", required=True, type=Path)
    train.add_argument("--config", type=Path, help="YAML/JSON file of config fields")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from its last checkpoint")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a model or checkpoint already in --output-dir")
    add_config_flags(train)

    evaluate = command("evaluate", "metrics, figures and report.html")
    evaluate.add_argument("--data-dir", required=True, type=Path)
    evaluate.add_argument("--model-dir", required=True, type=Path)
    evaluate.add_argument("--output-dir", type=Path,
                          help="default: MODEL_DIR/evaluation")

    predict = command("predict", "class probabilities as CSV")
    predict.add_argument("--model-dir", required=True, type=Path)
    predict.add_argument("--data-dir", required=True, type=Path)
    predict.add_argument("--split", default="test")
    predict.add_argument("--output", required=True, type=Path)

    grid = command("grid", "train a grid of models (the original workflow)")
    grid.add_argument("--data-dir", required=True, type=Path)
    grid.add_argument("--config", required=True, type=Path, help="grid YAML")
    grid.add_argument("--output-dir", type=Path, default=Path("trained_models"))
    grid.add_argument("--rnn", default="gru", help="comma-separated: gru,lstm")
    grid.add_argument("--loss", default="focal", help="comma-separated: focal,wce,ce")
    grid.add_argument("--no-mixed", dest="mixed", action="store_false")
    return parser


def run_simulate(args) -> None:
    from rnn_classifier.simulate import DEFAULT_COUNTS, simulate_survey, write_survey

    given = {"VS": args.n_vs, "SN": args.n_sn, "AGN": args.n_agn}
    counts = {f"n_{name.lower()}": DEFAULT_COUNTS[name] if value is None else value
              for name, value in given.items()}
    if args.output_dir.exists() and any(args.output_dir.iterdir()):
        raise DataError(f"{args.output_dir}: folder exists and is not empty; choose another "
                        "--output-dir")
    write_survey(args.output_dir, simulate_survey(seed=args.seed, **counts))
    print(f"wrote the simulated survey ({counts}) to {args.output_dir}")


def run_validate(args) -> None:
    from rnn_classifier.data import load_dataset, summarise

    dataset = load_dataset(args.data_dir, mixed=args.mixed, mask_value=args.mask_value)
    print(json.dumps(summarise(dataset, args.mask_value), indent=2))
    print(f"{args.data_dir}: valid")


def run_train(args) -> None:
    from rnn_classifier.train import train

    result = train(resolve_config(args), args.data_dir, args.output_dir, resume=args.resume,
                   overwrite=args.overwrite)
    print(f"model written to {result.model_dir}")


def run_evaluate(args) -> None:
    from rnn_classifier.evaluate import evaluate_model

    output_dir = args.output_dir or args.model_dir / "evaluation"
    metrics = evaluate_model(args.model_dir, args.data_dir, output_dir)
    for split in ("validation", "test"):
        figures = metrics[split]
        print(f"{split:>10}: accuracy={figures['accuracy']:.4f} "
              f"balanced_accuracy={figures['balanced_accuracy']:.4f} "
              f"macro_f1={figures['macro_f1']:.4f} macro_roc_auc={figures['macro_roc_auc']:.4f}")
    print(f"report: {Path(output_dir) / 'report.html'}")


def run_predict(args) -> None:
    from rnn_classifier.predict import load_trained_model, write_predictions

    trained = load_trained_model(args.model_dir)
    rows = write_predictions(
        trained, args.data_dir, args.split, args.output,
        progress=lambda done, total: print(f"predicted {done}/{total}", file=sys.stderr))
    print(f"wrote {rows} predictions to {args.output}")


def run_grid(args) -> None:
    from rnn_classifier.grid import run_grid as grid

    grid(args.data_dir, args.config, args.output_dir, args.rnn.split(","), args.loss.split(","),
         mixed=args.mixed)


COMMANDS = {"simulate": run_simulate, "validate": run_validate, "train": run_train,
            "evaluate": run_evaluate, "predict": run_predict, "grid": run_grid}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rnn-classifier` console script; returns the exit status."""
    # TensorFlow's C++ start-up chatter hides the progress lines people need.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from rnn_classifier.train import TrainError

    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (DataError, ConfigError, TrainError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
