"""Compile the pipelines to YAML for `kfp run create` / `kfp pipeline create`.

    python -m pipelines.compile --output build/training_pipeline.yaml \
        [--retraining-output build/retraining_pipeline.yaml] [--gcs-secret NAME] \
        [--image IMAGE] [--gpu] [--node-selector KEY=VALUE] [--toleration KEY=VALUE:EFFECT] \
        [--cpu 4] [--memory 16G] [--timeout-hours 12]

Both pipelines are compiled: the retraining pipeline goes beside the training
pipeline unless --retraining-output says otherwise. --gcs-secret mounts that
Kubernetes secret (a service-account key.json) on the tasks that touch Cloud
Storage; without it the tasks rely on Workload Identity. --cpu, --memory and
--timeout-hours size the train and tune pods (pipelines/task_settings.py);
the steps that are safe to repeat are retried with backoff.

Needs kfp only: no TensorFlow is imported (the component bodies run in the image).
"""

import argparse
from pathlib import Path

from kfp import compiler

from components import DEFAULT_IMAGE
from pipelines.retraining_pipeline import build_retraining_pipeline
from pipelines.task_settings import DEFAULT_RESOURCES, TaskResources
from pipelines.training_pipeline import build_training_pipeline


def parse_toleration(text: str) -> dict[str, str]:
    """`KEY[=VALUE]:EFFECT` -> kfp-kubernetes add_toleration arguments."""
    key_value, _, effect = text.partition(":")
    key, equals, value = key_value.partition("=")
    if not key or not effect:
        raise argparse.ArgumentTypeError(f"expected KEY[=VALUE]:EFFECT, got {text!r}")
    toleration = {"key": key, "operator": "Equal" if equals else "Exists", "effect": effect}
    if equals:
        toleration["value"] = value
    return toleration


def parse_label(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not key or not equals:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--output", type=Path, default=Path("build/training_pipeline.yaml"))
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--gpu", action="store_true", help="train step requests nvidia.com/gpu")
    parser.add_argument("--node-selector", type=parse_label, action="append", default=[],
                        metavar="KEY=VALUE")
    parser.add_argument("--toleration", type=parse_toleration, action="append", default=[],
                        metavar="KEY[=VALUE]:EFFECT")
    parser.add_argument("--retraining-output", type=Path, default=None,
                        help="default: retraining_pipeline.yaml beside --output")
    parser.add_argument("--gcs-secret", default=None, metavar="NAME",
                        help="Kubernetes secret with a service-account key.json to mount on "
                        "the tasks that use Cloud Storage (default: Workload Identity)")
    parser.add_argument("--cpu", default=DEFAULT_RESOURCES.cpu,
                        help="CPU request and limit of train and tune (Kubernetes quantity)")
    parser.add_argument("--memory", default=DEFAULT_RESOURCES.memory,
                        help="memory request and limit of train and tune (e.g. 16G)")
    parser.add_argument("--timeout-hours", type=float, default=DEFAULT_RESOURCES.timeout_hours,
                        help="deadline of the train and tune pods")
    args = parser.parse_args(argv)
    resources = TaskResources(args.cpu, args.memory, args.timeout_hours)
    retraining_output = args.retraining_output or args.output.with_name(
        "retraining_pipeline.yaml")
    hardware = (args.image, args.gpu, dict(args.node_selector), args.toleration)
    for build, output in ((build_training_pipeline, args.output),
                          (build_retraining_pipeline, retraining_output)):
        output.parent.mkdir(parents=True, exist_ok=True)  # kfp's compiler does not
        compiler.Compiler().compile(
            build(*hardware, gcs_secret=args.gcs_secret, resources=resources), str(output))
        print(f"compiled {output} (image {args.image}{', 1 GPU' if args.gpu else ''}"
              f"{f', secret {args.gcs_secret}' if args.gcs_secret else ''})")
    return args.output


if __name__ == "__main__":
    main()
