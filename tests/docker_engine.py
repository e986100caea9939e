"""A private Docker engine for the image tests (`make image-test`), and the bases it builds on.

These machines have no Docker engine and no registry but PyPI and Debian's
archive. Debian's `docker.io` package brings `dockerd`, which runs here as root
with everything of its own: data root, exec root, socket and pid file under one
work folder, no iptables rules and no default bridge (builds and containers use
the host's network). A Docker the user already runs, and its
/var/run/docker.sock, are never touched; every command below names the private
socket, and a private DOCKER_CONFIG keeps the user's contexts and registry
logins out.

Where the Dockerfile's base (`python:3.11-slim`) cannot be pulled, a stand-in is
built from Debian packages: debootstrap bookworm (the Debian release that
python:3.11-slim is built on) with python3.11 and python3.11-venv, the host's CA
bundle (pip inside the build must trust the roots the host trusts), `python3`
and `python` on PATH, `docker import`ed under the base's tag.

The work folder is kept between runs as a cache (the data root holds the base
image and the build's layers); delete it for a run from scratch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Command -> the Debian package that brings it.
DEBIAN_PACKAGES = {"dockerd": "docker.io", "docker": "docker.io", "debootstrap": "debootstrap"}
STAND_IN_SUITE = "bookworm"
STAND_IN_PACKAGES = ("python3.11", "python3.11-venv",
                     # python3.11-venv depends on python3.11-distutils, which only
                     # python3-distutils provides; debootstrap resolves no virtual packages.
                     "python3-distutils")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STAND_IN_MESSAGE = "stand-in built with debootstrap"
CONTAINERD_NAMESPACE = "rnn-classifier-image-test"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


def ensure_debian_packages(commands: Sequence[str] = tuple(DEBIAN_PACKAGES),
                           say: Callable[[str], None] = print) -> None:
    """Install, with apt, the Debian packages of the commands that are not on PATH."""
    missing = sorted({DEBIAN_PACKAGES[command] for command in commands if not which(command)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"{', '.join(missing)} missing; installing them needs root")
    say(f"apt-get install {' '.join(missing)}")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=environment, stdout=subprocess.DEVNULL)


def which(command: str) -> str | None:
    """`command` on PATH, or in the sbin folders where Debian puts dockerd and debootstrap."""
    return shutil.which(command) or shutil.which(
        command, path=os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin")))


def debian_mirror(sources: Sequence[Path] = (Path("/etc/apt/sources.list"),
                                             Path("/etc/apt/sources.list.d"))) -> str:
    """The Debian archive this host's apt uses (not its security archive).

    Read from the host's apt sources, one-line (`deb URI SUITE ...`) or deb822
    (`URIs:`), so that debootstrap fetches from where apt already does.
    """
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(source.glob("*.list")) + sorted(source.glob("*.sources"))
        elif source.exists():
            files.append(source)
    for path in files:
        text = path.read_text()
        uris = re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.MULTILINE)
        uris += [uri for line in re.findall(r"^URIs:(.*)$", text, re.MULTILINE)
                 for uri in line.split()]
        for uri in uris:
            if "security" not in uri and uri.startswith(("http://", "https://")):
                return uri
    raise RuntimeError("no Debian archive found in the host's apt sources; set DEBIAN_MIRROR")


class PrivateDockerd:
    """A `dockerd` of our own, started in `work_dir` and stopped on exit (even on failure).

    Use as a context manager; `docker(...)` runs the docker CLI against it, and
    `environment` is what a client (the docker SDK under kfp.local) needs to
    reach it. Progress lines go to `say`.
    """

    def __init__(self, work_dir: Path, say: Callable[[str], None] = print) -> None:
        self.work_dir = Path(work_dir)
        self.say = say
        self.socket = self.work_dir / "docker.sock"
        self.pid_file = self.work_dir / "docker.pid"
        self.log_path = self.work_dir / "dockerd.log"
        self.process: subprocess.Popen | None = None
        self._lock = None
        self.environment = {
            "DOCKER_HOST": f"unix://{self.socket}",
            # The user's ~/.docker (contexts, registry logins) stays out of it.
            "DOCKER_CONFIG": str(self.work_dir / "client-config"),
            # The classic builder: every client and engine version has it, and it takes
            # `--network host` without the BuildKit entitlement a daemon must grant.
            "DOCKER_BUILDKIT": "0",
        }

    def __enter__(self) -> PrivateDockerd:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        """Start dockerd and wait until it answers; a leftover of ours is stopped first."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        Path(self.environment["DOCKER_CONFIG"]).mkdir(exist_ok=True)
        # One run at a time per work folder: a second one would stop the first's dockerd
        # as a leftover.
        self._lock = (self.work_dir / "lock").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise RuntimeError(f"another image test is using {self.work_dir}; wait for it, "
                               f"or give this one another folder (IMAGE_TEST_DIR)") from None
        try:
            self._start_dockerd()
        except BaseException:
            self.stop()
            raise

    def _start_dockerd(self) -> None:
        self._stop_leftover()
        self._unmount_leftovers()
        command = [which("dockerd") or "dockerd",
                   "--data-root", str(self.work_dir / "data"),
                   "--exec-root", str(self.work_dir / "exec"),
                   "--pidfile", str(self.pid_file),
                   "-H", f"unix://{self.socket}",
                   # No NAT rules and no docker0 bridge on the host: builds and
                   # containers run with --network host.
                   "--iptables=false", "--ip6tables=false", "--bridge=none",
                   # dockerd uses a system containerd when one runs (a user's Docker):
                   # namespaces of our own keep our containers apart from its.
                   "--containerd-namespace", CONTAINERD_NAMESPACE,
                   "--containerd-plugins-namespace", f"{CONTAINERD_NAMESPACE}-plugins"]
        self.say(f"starting a private dockerd on {self.socket}")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self.process.returncode}): "
                                   f"{self.log_tail()}")
            if self.docker("version", check=False, capture=True).returncode == 0:
                version = self.docker("version", "--format", "{{.Server.Version}}",
                                      capture=True).stdout.strip()
                self.say(f"dockerd {version} is up")
                return
            time.sleep(0.5)
        raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT_S} s: "
                           f"{self.log_tail()}")

    def stop(self) -> None:
        """Stop dockerd (SIGTERM, then SIGKILL after STOP_TIMEOUT_S); it stops its containers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
            self._unmount_leftovers()
            self.say("private dockerd stopped")
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _unmount_leftovers(self) -> None:
        """Unmount what dockerd left mounted under the work folder (its default network
        namespace stays bind-mounted in the exec root after it exits), so that the folder
        can be deleted."""
        inside = f"{self.work_dir.resolve()}/"
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            # Field 5 is the mount point, with spaces and the like octal-escaped.
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(inside):
                points.append(point)
        for point in sorted(points, key=len, reverse=True):  # nested mounts first
            subprocess.run(["umount", point], check=False, capture_output=True)

    def _stop_leftover(self) -> None:
        """A dockerd left running by an interrupted run of ours (our pid file names it)."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if cmdline and cmdline[0].endswith(b"dockerd") and str(self.pid_file).encode() in (
                    cmdline):
                self.say(f"stopping a private dockerd left running (pid {pid})")
                os.kill(pid, signal.SIGTERM)
                for _ in range(STOP_TIMEOUT_S * 10):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.1)

    def log_tail(self, characters: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def client_environment(self) -> dict[str, str]:
        """This process's environment with every DOCKER_* variable replaced by ours."""
        environment = {name: value for name, value in os.environ.items()
                       if not name.startswith("DOCKER_")}
        return environment | self.environment

    def docker(self, *args: str, check: bool = True, capture: bool = False,
               stdin=None, input: str | None = None,
               timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run the docker CLI against this engine.

        capture: return its output as text; stdin: a stream to read from; input: text
        to send instead.
        """
        return subprocess.run([which("docker") or "docker", *args],
                              env=self.client_environment(), check=check, capture_output=capture,
                              text=capture or input is not None, stdin=stdin, input=input,
                              timeout=timeout)

    def has_image(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False, capture=True).returncode == 0

    def image_size(self, tag: str) -> int:
        """The image's size in bytes, as `docker images` reports it (all layers)."""
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", tag,
                               capture=True).stdout)

    def pull(self, tag: str) -> str | None:
        """Pull `tag`; None when done, else why not (the engine's one-line answer)."""
        result = self.docker("pull", tag, check=False, capture=True, timeout=1800)
        if result.returncode == 0:
            return None
        lines = (result.stderr or result.stdout).strip().splitlines()
        return lines[-1] if lines else f"docker pull exited {result.returncode}"

    def build(self, dockerfile: Path, tag: str, context: Path, log: Path) -> float:
        """`docker build --network host`; returns seconds taken. The output goes to `log`,
        and its `Step N/M` lines to the progress lines."""
        started = time.monotonic()
        command = [which("docker") or "docker", "build", "--network", "host",
                   "-f", str(dockerfile), "-t", tag, str(context)]
        with log.open("ab") as stream, subprocess.Popen(
                command, env=self.client_environment(), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT) as process:
            assert process.stdout is not None
            for line in process.stdout:
                stream.write(line)
                if line.startswith(b"Step "):
                    self.say(f"  {tag}: {line.decode(errors='replace').strip()[:100]}")
        if process.returncode != 0:
            raise RuntimeError(f"docker build of {dockerfile.name} failed; see {log}:\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        return time.monotonic() - started


def ensure_base(engine: PrivateDockerd, tag: str) -> str:
    """Make base image `tag` available: already there, pulled, or the stand-in built.

    Returns how it came, for the progress lines and the report.
    """
    if engine.has_image(tag):
        history = engine.docker("history", "--no-trunc", "--format", "{{.Comment}}", tag,
                                capture=True).stdout
        return "stand-in, cached" if STAND_IN_MESSAGE in history else "cached"
    why_not = engine.pull(tag)
    if why_not is None:
        return "pulled"
    engine.say(f"cannot pull {tag} ({why_not}); building a stand-in with debootstrap")
    build_stand_in(engine, tag)
    return "stand-in"


def build_stand_in(engine: PrivateDockerd, tag: str) -> None:
    """A stand-in for python:3.11-slim from Debian packages, imported under `tag`."""
    root = engine.work_dir / "stand-in-rootfs"
    shutil.rmtree(root, ignore_errors=True)
    mirror = os.environ.get("DEBIAN_MIRROR") or debian_mirror()
    started = time.monotonic()
    log = engine.work_dir / "debootstrap.log"
    with log.open("ab") as stream:
        result = subprocess.run(
            [which("debootstrap") or "debootstrap", "--variant=minbase",
             f"--include={','.join(STAND_IN_PACKAGES)}", STAND_IN_SUITE, str(root), mirror],
            stdout=stream, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed; see {log}:\n"
                           f"{log.read_text(errors='replace')[-3000:]}")
    # pip inside the build must trust what the host trusts (PIP_CERT below points at it).
    shutil.copyfile(HOST_CA_BUNDLE, root / HOST_CA_BUNDLE.relative_to("/"))
    # python:3.11-slim has `python3` and `python` in /usr/local/bin; the Dockerfiles call both.
    for name in ("python3", "python"):
        link = root / "usr/local/bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to("/usr/bin/python3.11")
    # Left by debootstrap and apt, of no use in an image.
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "debootstrap"):
        shutil.rmtree(root / leftover, ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        engine.docker("import", "--message", STAND_IN_MESSAGE,
                      "--change", "ENV LANG=C.UTF-8",
                      "--change", f"ENV PIP_CERT={HOST_CA_BUNDLE}",
                      "--change", 'CMD ["python3"]', "-", tag,
                      stdin=tar.stdout, capture=True)
    finally:
        tar.wait()
    shutil.rmtree(root, ignore_errors=True)
    engine.say(f"stand-in {tag} imported in {time.monotonic() - started:.0f} s "
             f"({engine.image_size(tag) / 1e6:.0f} MB)")
