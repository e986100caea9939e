"""Run a compiled pipeline YAML whole on this machine under `kfp.local`.

    python -m pipelines.run_local --data-uri data/simulated_survey \
        [--pipeline build/training_pipeline.yaml] [--pipeline-root runs] [--set epochs=20 ...]
        [--no-cache]

This runs exactly what `kfp run create` would submit, each step as a
subprocess in this Python environment (`SubprocessRunner(use_venv=False)`),
with kfp's local cache on: rerunning with nothing changed reuses every step.
Prints the test metrics and the path of the HTML report.
"""

import argparse
import json
import sys
from pathlib import Path

SUMMARY_METRICS = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1",
                   "test_macro_roc_auc", "test_ece")


def pipeline_parameter_types(pipeline_file: Path) -> dict[str, str]:
    """Parameter name -> IR type (STRING, NUMBER_INTEGER...) of a compiled pipeline."""
    import yaml

    spec = next(yaml.safe_load_all(pipeline_file.read_text()))
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    return {name: value["parameterType"] for name, value in parameters.items()}


def parse_settings(settings: list[str], types: dict[str, str]) -> dict:
    """`name=value` strings converted to the pipeline's parameter types."""
    from rnn_classifier.cli import parse_bool

    converters = {"BOOLEAN": parse_bool, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float,
                  "STRING": str}
    values = {}
    for text in settings:
        name, equals, value = text.partition("=")
        if not equals or name not in types:
            raise SystemExit(f"error: --set {text!r}: expected NAME=VALUE with a pipeline "
                             f"parameter, one of {sorted(types)}")
        values[name] = converters[types[name]](value)
    return values


def run_pipeline(pipeline_file: Path, pipeline_root: Path, arguments: dict,
                 enable_caching: bool = True):
    """Run the compiled pipeline under kfp.local and return its task (outputs materialised)."""
    from kfp import components, local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               enable_caching=enable_caching)
    pipeline = components.load_component_from_file(str(pipeline_file))
    return pipeline(**arguments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--pipeline", type=Path, default=Path("build/training_pipeline.yaml"))
    parser.add_argument("--data-uri", required=True)
    parser.add_argument("--pipeline-root", type=Path, default=Path("runs"))
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="NAME=VALUE", help="a pipeline parameter (repeatable)")
    parser.add_argument("--no-cache", action="store_true",
                        help="run every step even if an identical one ran before")
    args = parser.parse_args(argv)
    data_uri = args.data_uri if args.data_uri.startswith("gs://") else str(
        Path(args.data_uri).resolve())
    settings = parse_settings(args.settings, pipeline_parameter_types(args.pipeline))
    try:
        task = run_pipeline(args.pipeline, args.pipeline_root.resolve(),
                            {"data_uri": data_uri, **settings},
                            enable_caching=not args.no_cache)
    except RuntimeError as error:
        print(f"error: pipeline failed: {error}", file=sys.stderr)
        return 1
    metrics = json.loads(Path(task.outputs["test_metrics"].path).read_text())
    width = max(len(name) for name in metrics)
    print("\ntest-set metrics")
    for name, value in metrics.items():
        marker = "*" if name in SUMMARY_METRICS else " "
        print(f" {marker} {name:<{width}}  {value:.4f}")
    print(f"\nmodel:  {task.outputs['model'].path}")
    print(f"report: {task.outputs['report'].path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
