"""Build-time self check of the rnn-classifier image: does it hold what the lock says?

Both Dockerfiles run this as the last build step, as the runtime user, so a
broken image fails `docker build` instead of a pipeline run on the cluster.
It checks:

- every line of the lock file is an exact `name==version` pin, and the
  installed distribution of each has exactly that version (stronger than
  `pip check`, and usable on the GPU base, whose distro Python packages make
  `pip check` report conflicts that are not ours);
- the Python minor version is the one the lock was resolved with;
- TensorFlow, kfp and the package import, `python3 -m kfp.dsl.executor_main`
  (the command of every KFP lightweight component) can be found, and
  `rnn-classifier` (the Katib trial command) is on PATH;
- with --non-root: it runs as a non-root user whose HOME is writable (Keras
  writes ~/.keras), and who can write where the KFP v2 launcher puts
  artifacts: it maps gs://, minio:// and s3:// URIs to /gcs/, /minio/ and
  /s3/ at the filesystem root, and backends without kubeflow/pipelines#10857
  mount nothing there;
- with --only-locked: the environment holds nothing the lock does not pin
  (besides pip and the package itself), so no test or build tool rides along.

On the GPU image TensorFlow comes from the base image as the `tensorflow`
distribution, not the locked `tensorflow-cpu`: `--tensorflow-dist tensorflow`
checks that distribution against the lock's TensorFlow version instead.

Standard library only; usage:
    python3 check_image.py --lock requirements.lock --python 3.11 [--non-root] [--only-locked]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)$")
LOCKED_TENSORFLOW = "tensorflow-cpu"
# What the cluster runs: KFP components import the executor, Katib trials run the CLI.
MODULES = ("tensorflow", "kfp", "rnn_classifier.cli")
EXECUTOR = "kfp.dsl.executor_main"
COMMANDS = ("python3", "rnn-classifier")
# Where the KFP v2 launcher maps remote artifact URIs (gs://b/x -> /gcs/b/x).
LAUNCHER_FOLDERS = {"gs://": "/gcs", "minio://": "/minio", "s3://": "/s3"}
# Installed beside the lock by design: the installer, and the package (--no-deps).
NOT_LOCKED = ("pip", "rnn-classifier")


def normalize(name: str) -> str:
    """PEP 503 name: `tensorflow_cpu` and `TensorFlow-CPU` are both `tensorflow-cpu`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Pins of a lock file (`name==version` lines, `#` comments) as {normalized name:
    (name, version)}, and problems."""
    pins: dict[str, tuple[str, str]] = {}
    problems = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if match is None:
            problems.append(f"{path}:{number}: not an exact `name==version` pin: {line!r}")
            continue
        pins[normalize(match["name"])] = (match["name"], match["version"])
    return pins, problems


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_versions(pins: dict[str, tuple[str, str]], tensorflow_dist: str) -> list[str]:
    """One problem per locked distribution whose installed version differs from its pin."""
    problems = []
    for key, (name, version) in sorted(pins.items()):
        if key == LOCKED_TENSORFLOW:
            name = tensorflow_dist
        found = installed_version(name)
        if found != version:
            problems.append(f"{name}: lock pins {version}, installed {found or 'nothing'}")
    if LOCKED_TENSORFLOW not in pins:
        problems.append(f"the lock pins no {LOCKED_TENSORFLOW}, so no TensorFlow version to check")
    return problems


def check_only_locked(pins: dict[str, tuple[str, str]]) -> list[str]:
    """One problem per distribution in this environment's site-packages that the lock
    does not pin. Only this environment's own site-packages: the GPU image's venv
    also sees its base's system packages, which are not ours to list."""
    site_packages = sysconfig.get_paths()["purelib"]
    problems = []
    for dist in importlib.metadata.distributions(path=[site_packages]):
        name = dist.metadata["Name"]
        key = normalize(name)
        if key not in pins and key not in NOT_LOCKED:
            problems.append(f"{name} {dist.version} is installed but not in the lock "
                            f"(a development tool in the image?)")
    return sorted(problems)


def check_launcher_folders() -> list[str]:
    """One problem per launcher folder that this (non-root) user cannot write in."""
    problems = []
    for scheme, folder in LAUNCHER_FOLDERS.items():
        try:
            tempfile.TemporaryDirectory(dir=folder).cleanup()
        except OSError as error:
            problems.append(
                f"uid {os.geteuid()} cannot write in {folder} ({error.strerror}): the KFP "
                f"launcher writes {scheme} artifacts under {folder}/, and backends without "
                f"kubeflow/pipelines#10857 mount no volume there; make {folder} mode 1777")
    return problems


def check_runtime(python: str | None, non_root: bool) -> list[str]:
    problems = []
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python is not None and running != python:
        problems.append(f"Python {running} runs here; the lock was resolved with Python {python}")
    for command in COMMANDS:
        if shutil.which(command) is None:
            problems.append(f"`{command}` is not on PATH")
    if importlib.util.find_spec(EXECUTOR) is None:
        problems.append(f"{EXECUTOR} cannot be found: KFP components would not start")
    if non_root:
        if os.geteuid() == 0:
            problems.append("runs as root; the image must end with a non-root USER")
        home = Path(os.environ.get("HOME", "/"))
        if not os.access(home, os.W_OK):
            problems.append(f"HOME={home} is not writable by uid {os.geteuid()}")
        problems += check_launcher_folders()
    return problems


def check_imports() -> list[str]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the build log readable
    problems = []
    for module in MODULES:
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - any import failure is the finding
            problems.append(f"import {module} failed: {type(error).__name__}: {error}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, required=True, help="the runtime lock file")
    parser.add_argument("--python", help="required Python minor version, e.g. 3.11")
    parser.add_argument("--tensorflow-dist", default=LOCKED_TENSORFLOW,
                        help="distribution that provides TensorFlow (GPU base: tensorflow)")
    parser.add_argument("--non-root", action="store_true",
                        help="also require a non-root user with a writable HOME and "
                             "writable launcher folders (/gcs, /minio, /s3)")
    parser.add_argument("--only-locked", action="store_true",
                        help="also require that nothing unlocked is installed")
    args = parser.parse_args(argv)

    pins, problems = read_lock(args.lock)
    problems += check_versions(pins, args.tensorflow_dist)
    problems += check_runtime(args.python, args.non_root)
    if args.only_locked:
        problems += check_only_locked(pins)
    if not problems:  # importing TensorFlow takes seconds: only worth it once the rest holds
        problems += check_imports()
    for problem in problems:
        print(f"image check: {problem}", file=sys.stderr)
    if problems:
        print(f"image check FAILED: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    tensorflow = pins[LOCKED_TENSORFLOW][1]
    print(f"image check passed: Python {sys.version.split()[0]}, {len(pins)} locked packages, "
          f"kfp {installed_version('kfp')}, tensorflow {tensorflow} ({args.tensorflow_dist})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
