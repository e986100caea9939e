"""The image, built and run for real: `make image-test`.

A private dockerd (tests/docker_engine.py) builds docker/Dockerfile from the
repository, on the real `python:3.11-slim` where it can be pulled and on a
stand-in built from Debian packages where it cannot. Then, in that image:

- the build-time self check again, and nothing of the development lock;
- the KFP launcher's contract, emulated: as the image's uid 1000, a component
  whose output artifact URI is gs://... writes under /gcs/..., where the
  launcher maps it; an image whose /gcs uid 1000 cannot write fails that check;
- the image's layers hold no credentials, no tests and nothing of the
  repository beyond what .dockerignore lets into the build;
- the compiled training pipeline, and the retraining pipeline against the
  gcp-storage-emulator on the host network, under kfp.local's DockerRunner,
  with the same assertions as the subprocess-runner tests;
- docker/Dockerfile.gpu, where its base can be pulled (skipped, with the
  reason, where it cannot).

Skipped unless RNN_CLASSIFIER_IMAGE_TEST=1, which `make image-test` sets: it
needs root, apt, a few GB of disk and minutes, so `make test` leaves it out.
"""

# No `from __future__ import annotations`: kfp reads the component's annotations as types.
import hashlib
import json
import os
import re
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from kfp import dsl
from kfp.dsl import Artifact, Output

from pipelines import compile as compile_module
from pipelines.run_local import without_retries
from rnn_classifier import retrain, storage
from rnn_classifier.data import write_dataset
from rnn_classifier.simulate import CLASS_NAMES, simulate_survey
from tests import docker_engine
from tests.test_docker import dockerignore_excludes, lock_pins, normalize

pytestmark = [
    pytest.mark.skipif(os.environ.get("RNN_CLASSIFIER_IMAGE_TEST") != "1",
                       reason="`make image-test` runs these (root, apt, a private dockerd, "
                              "minutes)"),
    # kfp.local says so for every task with a display name; the cluster shows them.
    pytest.mark.filterwarnings("ignore:Task .* have no effect in the current local runner"),
]

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = {"cpu": REPO / "docker" / "Dockerfile", "gpu": REPO / "docker" / "Dockerfile.gpu"}
RUNTIME_LOCK, DEV_LOCK = REPO / "requirements.lock", REPO / "requirements-dev.lock"
WORK_DIR = Path(os.environ.get("IMAGE_TEST_DIR", "/var/tmp/rnn-classifier-image-test"))
TAGS = {"cpu": "rnn-classifier:image-test", "gpu": "rnn-classifier:image-test-gpu"}
IN_IMAGE_LOCK = "/opt/rnn-classifier/requirements.lock"
IN_IMAGE_CHECK = "/opt/rnn-classifier/check_image.py"
RUNTIME_UID = 1000
# docker/Dockerfile as it was with the whole lock (test tools included), built the same
# way on the stand-in base (2026-12-07): the runtime-only image must stay below it.
WHOLE_LOCK_IMAGE_BYTES = 2_631_899_461
# Small and quick, as in tests/test_pipeline.py and tests/test_retraining.py.
QUICK = {"epochs": 2, "rnn_units": 8, "dense_units": 8, "batch_size": 128, "time_column": 0}
# Files that would hold a secret: by name (the usual places of tokens and keys), and by
# what they say inside (a service-account key file has "private_key", whatever its name).
CREDENTIAL_NAME = re.compile(
    r"(^|/)(\.git-credentials|\.netrc|\.pypirc|\.npmrc|\.env|\.docker/config\.json|"
    r"[^/]*credentials\.json|id_(rsa|ecdsa|ed25519)|[^/]*\.(p12|pfx))$")
CREDENTIAL_CONTENT = (b"PRIVATE KEY-----", b'"private_key"', b'"refresh_token"')
# Data and configuration files are searched for CREDENTIAL_CONTENT; code and libraries
# are not (OpenSSL and google-auth name the PEM markers in their code).
SEARCHED_SUFFIXES = {".json", ".pem", ".key", ".crt", ".cfg", ".ini", ".txt", ".yaml",
                     ".yml", ".toml", ".env", ".conf", ""}
SEARCHED_MAX_BYTES = 4_000_000
# A repository file shorter than this may match an unrelated file by chance (an empty
# __init__.py, a one-line config).
MIN_COMPARED_BYTES = 200


# --------------------------------------------------------------------------
# The engine and the image
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def say(pytestconfig):
    """Print a progress line as it happens, past pytest's output capture."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"[image-test {time.strftime('%H:%M:%S')}] {message}", flush=True)

    return say


@pytest.fixture(scope="session")
def engine(say):
    """The private dockerd, started once and stopped at the end (even on failure); kfp's
    docker SDK client (docker.from_env) is pointed at it meanwhile."""
    started = time.monotonic()
    docker_engine.ensure_debian_packages(say=say)
    with (docker_engine.PrivateDockerd(WORK_DIR, say) as private,
          pytest.MonkeyPatch.context() as env):
        for name in [name for name in os.environ if name.startswith("DOCKER_")]:
            env.delenv(name)
        for name, value in private.environment.items():
            env.setenv(name, value)
        yield private
    say(f"image tests took {time.monotonic() - started:.0f} s in all, from the engine's start")


def base_image(dockerfile: Path) -> str:
    """The FROM image of a single-stage Dockerfile."""
    return re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)[1]


@pytest.fixture(scope="session")
def cpu_image(engine) -> str:
    """docker/Dockerfile built from the repository; its tag."""
    base = base_image(DOCKERFILES["cpu"])
    how = docker_engine.ensure_base(engine, base)
    engine.say(f"base {base}: {how}; building docker/Dockerfile")
    seconds = engine.build(DOCKERFILES["cpu"], TAGS["cpu"], REPO, WORK_DIR / "build-cpu.log")
    engine.say(f"built {TAGS['cpu']} in {seconds:.0f} s: "
               f"{engine.image_size(TAGS['cpu']) / 1e9:.2f} GB")
    return TAGS["cpu"]


def run_in(engine, image: str, *command: str, **options) -> subprocess.CompletedProcess:
    """`docker run --rm` as the image's own user, no network; output captured as text."""
    return engine.docker("run", "--rm", "--network", "none", *options.pop("docker_args", ()),
                         image, *command, check=False, capture=True, **options)


def test_the_image_holds_the_runtime_lock_and_nothing_of_the_dev_lock(engine, cpu_image):
    check = run_in(engine, cpu_image, "python3", IN_IMAGE_CHECK, "--lock", IN_IMAGE_LOCK,
                   "--python", "3.11", "--non-root", "--only-locked")
    assert check.returncode == 0, check.stderr
    assert "image check passed" in check.stdout
    pip = run_in(engine, cpu_image, "python3", "-m", "pip", "list", "--format=json")
    assert pip.returncode == 0, pip.stderr
    installed = {normalize(dist["name"]) for dist in json.loads(pip.stdout)}
    dev_only = set(lock_pins(DEV_LOCK)) - set(lock_pins(RUNTIME_LOCK))
    assert {"pytest", "ruff", "selenium", "aeon", "gcp-storage-emulator"} <= dev_only
    assert not installed & dev_only, f"development packages in the image: {installed & dev_only}"
    assert run_in(engine, cpu_image, "python3", "-m", "pip", "check").returncode == 0
    size = engine.image_size(cpu_image)
    assert size < WHOLE_LOCK_IMAGE_BYTES, f"{size / 1e9:.2f} GB"


# --------------------------------------------------------------------------
# The launcher's contract
# --------------------------------------------------------------------------

@dsl.component(base_image=TAGS["cpu"], install_kfp_package=False)
def write_output(artifact: Output[Artifact]):
    """Writes a file at its output artifact's local path."""
    with open(artifact.path, "w") as stream:
        stream.write("written by the component")


# What the KFP v2 launcher does in the step's container before the component runs:
# create the local folder of each output artifact and its own output folder, as the
# container's user; then the component's command; then show what it wrote.
LAUNCHER = """set -e
mkdir -p "$(dirname "$OUTPUT_PATH")" /tmp/kfp_outputs
"$@"
cat "$OUTPUT_PATH"
"""


def launcher_contract_problem(engine, image: str) -> str | None:
    """None if a component writing a gs:// output artifact works in `image` as its user,
    else what is wrong, in a sentence.

    The output URI goes through kfp's own mapping (Artifact.path: gs://b/x -> /gcs/b/x),
    and the component runs through its real command (kfp.dsl.executor_main).
    """
    uri = "gs://pipeline-bucket/root/run-1/write-output/artifact"
    local_path = Artifact(uri=uri).path
    assert local_path == "/gcs/pipeline-bucket/root/run-1/write-output/artifact", local_path
    executor_input = {
        "inputs": {},
        "outputs": {"artifacts": {"artifact": {"artifacts": [
            {"type": {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"},
             "uri": uri, "metadata": {}}]}},
            "outputFile": "/tmp/kfp_outputs/output_metadata.json"}}
    container = write_output.component_spec.implementation.container
    command = [*container.command,
               *(json.dumps(executor_input) if arg == "{{$}}" else arg for arg in container.args)]
    result = run_in(engine, image, "sh", "-c", LAUNCHER, "launcher", *command,
                    docker_args=("--env", f"OUTPUT_PATH={local_path}"))
    if result.returncode == 0 and result.stdout.endswith("written by the component"):
        return None
    uid = run_in(engine, image, "id", "-u").stdout.strip()
    output = (result.stdout + result.stderr).strip()
    if "Permission denied" in output:
        return (f"{image}: uid {uid} cannot write {local_path}, the local path of output "
                f"{uri}: /gcs is not writable for uid {uid}. The KFP v2 launcher writes gs:// "
                f"artifacts under /gcs/, and backends without kubeflow/pipelines#10857 mount "
                f"no volume there, so the image must make /gcs writable for any uid "
                f"(mode 1777). Output: {output[-500:]}")
    return f"{image}: the component failed (exit {result.returncode}): {output[-2000:]}"


def test_a_gs_output_is_written_under_gcs_as_uid_1000(engine, cpu_image):
    assert run_in(engine, cpu_image, "id", "-u").stdout.strip() == str(RUNTIME_UID)
    assert launcher_contract_problem(engine, cpu_image) is None
    modes = run_in(engine, cpu_image, "stat", "-c", "%n %a", "/gcs", "/minio", "/s3")
    assert modes.stdout.split("\n")[:3] == ["/gcs 1777", "/minio 1777", "/s3 1777"]


def test_an_image_whose_gcs_uid_1000_cannot_write_fails_the_contract(engine, cpu_image):
    broken = f"{cpu_image}-gcs-root-only"
    dockerfile = (f"FROM {cpu_image}\nUSER 0\nRUN chmod 0755 /gcs\n"
                  f"USER {RUNTIME_UID}:{RUNTIME_UID}\n")
    built = engine.docker("build", "--network", "none", "-t", broken, "-", input=dockerfile,
                          check=False, capture=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    try:
        problem = launcher_contract_problem(engine, broken)
        assert problem is not None
        assert f"/gcs is not writable for uid {RUNTIME_UID}" in problem
        assert "kubeflow/pipelines#10857" in problem
        # The image's own check says so too.
        check = run_in(engine, broken, "python3", IN_IMAGE_CHECK, "--lock", IN_IMAGE_LOCK,
                       "--non-root")
        assert check.returncode == 1
        assert f"uid {RUNTIME_UID} cannot write in /gcs (Permission denied)" in check.stderr
        assert "/minio" not in check.stderr
    finally:
        engine.docker("rmi", broken, check=False, capture=True)


# --------------------------------------------------------------------------
# What the image holds
# --------------------------------------------------------------------------

def tracked_files_left_out() -> dict[str, str]:
    """sha256 -> path of every tracked repository file that .dockerignore leaves out."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    hashes = {}
    for name in filter(None, listed):
        path = REPO / name
        if (dockerignore_excludes(name) and path.is_file()
                and path.stat().st_size >= MIN_COMPARED_BYTES):
            hashes[hashlib.sha256(path.read_bytes()).hexdigest()] = name
    return hashes


def layer_findings(engine, image: str, left_out: dict[str, str]) -> list[str]:
    """Every file in every layer of `image` (`docker save`: deleted files included) that
    is a repository file .dockerignore leaves out, or looks like a credential."""
    findings = []
    sizes = {(REPO / name).stat().st_size for name in left_out.values()}
    save = subprocess.Popen([docker_engine.which("docker") or "docker", "save", image],
                            stdout=subprocess.PIPE, env=engine.client_environment())
    with tarfile.open(fileobj=save.stdout, mode="r|") as archive:
        for member in archive:
            if not member.name.endswith("layer.tar"):
                continue
            with tarfile.open(fileobj=archive.extractfile(member), mode="r|") as layer:
                for entry in layer:
                    name = entry.name.lstrip("./")
                    if ".git" in name.split("/"):
                        findings.append(f"{name}: a git folder")
                    if not entry.isfile():
                        continue
                    if CREDENTIAL_NAME.search(name):
                        findings.append(f"{name}: named like a credential")
                    suffix = Path(name).suffix
                    searched = (suffix in SEARCHED_SUFFIXES
                                and entry.size <= SEARCHED_MAX_BYTES)
                    if not searched and entry.size not in sizes:
                        continue
                    data = layer.extractfile(entry).read()
                    if searched and any(marker in data for marker in CREDENTIAL_CONTENT):
                        findings.append(f"{name}: holds what looks like a private key or token")
                    copied = left_out.get(hashlib.sha256(data).hexdigest())
                    if copied:
                        findings.append(f"{name}: a copy of {copied}, which .dockerignore "
                                        f"leaves out")
    assert save.wait() == 0
    return findings


def test_the_image_holds_the_package_and_no_tests_credentials_or_build_context(
        engine, cpu_image):
    left_out = tracked_files_left_out()
    assert "tests/test_docker.py" in left_out.values()
    findings = layer_findings(engine, cpu_image, left_out)
    assert not findings, "\n".join(findings)

    env = engine.docker("image", "inspect", "--format", "{{json .Config.Env}}", cpu_image,
                        capture=True).stdout
    assert "CREDENTIALS" not in env and "TOKEN" not in env, env
    listing = run_in(engine, cpu_image, "python3", "-c", (
        "import pathlib, rnn_classifier\n"
        "root = pathlib.Path(rnn_classifier.__file__).parent\n"
        "print(*sorted(str(p.relative_to(root)) for p in root.rglob('*')\n"
        "              if p.is_file() and '__pycache__' not in p.parts), sep='\\n')"))
    assert listing.returncode == 0, listing.stderr
    package = REPO / "rnn_classifier"
    expected = {str(path.relative_to(package)) for path in package.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts
                and (path.suffix == ".py" or path.parent.name == "schemas")}
    assert set(listing.stdout.split()) == expected
    extra = run_in(engine, cpu_image, "find", "/opt/rnn-classifier", "-type", "f")
    assert sorted(extra.stdout.split()) == [IN_IMAGE_CHECK, IN_IMAGE_LOCK]


# --------------------------------------------------------------------------
# Both pipelines under kfp.local's DockerRunner
# --------------------------------------------------------------------------

def pipeline_root_for_uid_1000(tmp_path: Path) -> Path:
    """A pipeline root the image's user can write in. DockerRunner mounts only the
    pipeline root (at the same path), so the data must live under it too."""
    root = tmp_path / "pipeline-root"
    root.mkdir()
    os.chown(root, RUNTIME_UID, RUNTIME_UID)
    return root


def compiled(tmp_path: Path, name: str) -> Path:
    """The named pipeline, compiled for the image under test, without retry policies."""
    output = tmp_path / "build" / "training_pipeline.yaml"
    compile_module.main(["--output", str(output), "--image", TAGS["cpu"]])
    return without_retries(output.with_name(name), tmp_path / "local")


def run_in_docker(engine, pipeline_file: Path, root: Path, environment: dict | None = None,
                  **arguments):
    """Run a compiled pipeline with every step in a container of the image (host network)."""
    from kfp import components, local

    local.init(runner=local.DockerRunner(network_mode="host", environment=environment or {}),
               pipeline_root=str(root), enable_caching=False)
    pipeline = components.load_component_from_file(str(pipeline_file))
    started = time.monotonic()
    task = pipeline(**arguments)
    name = pipeline_file.stem.removesuffix(".local")
    engine.say(f"{name} ran in containers in {time.monotonic() - started:.0f} s")
    return task


def test_the_training_pipeline_runs_in_the_image(engine, cpu_image, tmp_path):
    root = pipeline_root_for_uid_1000(tmp_path)
    data = write_dataset(root / "survey", simulate_survey(n_vs=240, n_sn=60, n_agn=60, seed=3),
                         list(CLASS_NAMES))
    task = run_in_docker(engine, compiled(tmp_path, "training_pipeline.yaml"), root,
                         data_uri=str(data), **QUICK)
    run_dir = Path(task.outputs["report"].path).parents[1]
    assert run_dir.stat().st_uid == RUNTIME_UID  # written by the container, as uid 1000
    evaluation = json.loads((run_dir / "evaluate" / "executor_output.json").read_text())
    classification = evaluation["artifacts"]["classification_metrics"]["artifacts"][0]["metadata"]
    rows = [row["row"] for row in classification["confusionMatrix"]["rows"]]
    test_labels = np.load(data / "test_labels.npy").argmax(axis=1)
    np.testing.assert_array_equal(np.sum(rows, axis=1), np.bincount(test_labels, minlength=3))
    assert [spec["displayName"] for spec in
            classification["confusionMatrix"]["annotationSpecs"]] == list(CLASS_NAMES)
    roc = classification["confidenceMetrics"]
    assert roc and all(np.isfinite([point["confidenceThreshold"], point["recall"],
                                    point["falsePositiveRate"]]).all() for point in roc)
    metrics = evaluation["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert 0.0 <= metrics["test_macro_roc_auc"] <= 1.0
    assert json.loads(Path(task.outputs["test_metrics"].path).read_text())[
        "test_macro_roc_auc"] == pytest.approx(metrics["test_macro_roc_auc"])
    assert Path(task.outputs["report"].path).stat().st_size > 10_000
    assert (Path(task.outputs["model"].path) / "model.keras").exists()


def test_the_retraining_pipeline_runs_in_the_image_against_the_emulator(
        engine, cpu_image, gcs_bucket, tmp_path):
    bucket = gcs_bucket
    with tempfile.TemporaryDirectory() as staging:
        write_dataset(staging, simulate_survey(n_vs=240, n_sn=60, n_agn=60, seed=3, max_obs=20),
                      list(CLASS_NAMES))
        storage.upload_folder(staging, f"{bucket}/survey/reference")
    root = pipeline_root_for_uid_1000(tmp_path)
    # The emulator listens on the host's 127.0.0.1: the containers share the host network.
    task = run_in_docker(engine, compiled(tmp_path, "retraining_pipeline.yaml"), root,
                         environment={"STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]},
                         bucket_uri=bucket, rnn_layers=1, **QUICK)
    champion, generation = retrain.read_champion(bucket)
    assert generation > 0
    assert champion["reason"] == "no champion yet: the first model becomes the champion"
    assert champion["model_uri"] == f"{bucket}/models/{champion['run']}/model"
    assert champion["data"]["reference"] == f"{bucket}/survey/reference"
    assert champion["last_decision"]["promoted"] is True
    files = storage.list_files(f"{bucket}/models/{champion['run']}")
    assert {"model/model.keras", "model/config.json", "model/scaler.json", "metrics.json",
            "decision.json"} <= set(files)
    test_metrics = json.loads(Path(task.outputs["test_metrics"].path).read_text())
    assert champion["metrics"]["macro_roc_auc"] == pytest.approx(
        test_metrics["test_macro_roc_auc"])
    assert "no champion yet" in Path(task.outputs["decision"].path).read_text()


# --------------------------------------------------------------------------
# The GPU image
# --------------------------------------------------------------------------

def test_the_gpu_image_builds_where_its_base_can_be_pulled(engine):
    base = base_image(DOCKERFILES["gpu"])
    why_not = None if engine.has_image(base) else engine.pull(base)
    if why_not is not None:
        engine.say(f"docker/Dockerfile.gpu not built: cannot pull {base} ({why_not})")
        pytest.skip(f"docker/Dockerfile.gpu not built: cannot pull {base}: {why_not}")
    seconds = engine.build(DOCKERFILES["gpu"], TAGS["gpu"], REPO, WORK_DIR / "build-gpu.log")
    engine.say(f"built {TAGS['gpu']} in {seconds:.0f} s: "
               f"{engine.image_size(TAGS['gpu']) / 1e9:.2f} GB")
    check = run_in(engine, TAGS["gpu"], "python3", IN_IMAGE_CHECK, "--lock", IN_IMAGE_LOCK,
                   "--python", "3.11", "--tensorflow-dist", "tensorflow", "--non-root",
                   "--only-locked")
    assert check.returncode == 0, check.stderr
    assert launcher_contract_problem(engine, TAGS["gpu"]) is None
