"""Run a compiled pipeline YAML whole on this machine under `kfp.local`.

    python -m pipelines.run_local --data-uri data/simulated_survey \
        [--pipeline build/training_pipeline.yaml] [--pipeline-root runs] [--set epochs=20 ...]
        [--no-cache]

This runs exactly what `kfp run create` would submit, each step as a
subprocess in this Python environment (`SubprocessRunner(use_venv=False)`),
with kfp's local cache on: rerunning with nothing changed reuses every step.
Shows one line as each step starts and ends and each training epoch, then
the test metrics and the path of the HTML report; kfp's full output goes to
`kfp.log` in the run's folder under the pipeline root (`--verbose` prints it
instead).
"""

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path

from pipelines.run_output import ANSI, ReadableOutput

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


def without_retries(pipeline_file: Path, folder: Path) -> Path:
    """A copy of the compiled pipeline without its tasks' retry policies, written in `folder`.

    kfp.local honours retryPolicy, backoff included. A local run has no pods
    to evict and no flaky network to wait out, so a retry only repeats a
    failure (bad data fails validate_data four times, minutes apart).
    """
    import yaml

    documents = list(yaml.safe_load_all(pipeline_file.read_text()))
    spec = documents[0]
    for dag in [spec["root"].get("dag", {}), *(component.get("dag", {})
                                              for component in spec["components"].values())]:
        for task in dag.get("tasks", {}).values():
            task.pop("retryPolicy", None)
    folder.mkdir(parents=True, exist_ok=True)
    local_file = folder / f"{pipeline_file.stem}.local.yaml"
    local_file.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return local_file


def run_pipeline(pipeline_file: Path, pipeline_root: Path, arguments: dict,
                 enable_caching: bool = True):
    """Run the compiled pipeline under kfp.local and return its task (outputs materialised).

    The pipeline runs as compiled, except for its retry policies (see
    `without_retries`).
    """
    from kfp import components, local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               enable_caching=enable_caching)
    local_file = without_retries(Path(pipeline_file), Path(pipeline_root) / ".pipelines")
    pipeline = components.load_component_from_file(str(local_file))
    return pipeline(**arguments)


def _run_folder(pipeline_root: Path, before: set[Path]) -> Path | None:
    """The folder kfp.local made for this run (it makes one even when every step is cached)."""
    made = [path for path in pipeline_root.iterdir()
            if path.is_dir() and path not in before and not path.name.startswith(".")]
    return max(made, key=lambda path: path.stat().st_mtime, default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--pipeline", type=Path, default=Path("build/training_pipeline.yaml"))
    parser.add_argument("--data-uri", required=True)
    parser.add_argument("--pipeline-root", type=Path, default=Path("runs"))
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="NAME=VALUE", help="a pipeline parameter (repeatable)")
    parser.add_argument("--no-cache", action="store_true",
                        help="run every step even if an identical one ran before")
    parser.add_argument("--verbose", action="store_true",
                        help="print kfp's whole output instead of one line per step")
    args = parser.parse_args(argv)
    data_uri = args.data_uri if args.data_uri.startswith("gs://") else str(
        Path(args.data_uri).resolve())
    settings = parse_settings(args.settings, pipeline_parameter_types(args.pipeline))
    pipeline_root = args.pipeline_root.resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    before = set(pipeline_root.iterdir())
    log_path = pipeline_root / f"kfp-{time.strftime('%Y%m%d-%H%M%S')}.log"
    output = None if args.verbose else ReadableOutput(log_path, sys.stdout)
    task, failure = None, None
    try:
        with contextlib.ExitStack() as quiet:
            if output:
                quiet.enter_context(contextlib.redirect_stdout(output))
                quiet.enter_context(warnings.catch_warnings())
                warnings.showwarning = output.log_warning
                # kfp.local logs cache hits on the root logger, outside its task logs.
                quiet.enter_context(output.root_logging())
            task = run_pipeline(args.pipeline, pipeline_root, {"data_uri": data_uri, **settings},
                                enable_caching=not args.no_cache)
    except RuntimeError as error:
        failure = error
    finally:
        if output:
            output.close()
            run_folder = _run_folder(pipeline_root, before)
            if run_folder is not None:
                log_path = log_path.replace(run_folder / "kfp.log")
            print(f"full log: {log_path}")
    if failure is not None:
        print(f"error: pipeline failed: {ANSI.sub('', str(failure))}", file=sys.stderr)
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
