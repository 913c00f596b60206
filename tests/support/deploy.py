"""The deployment kit (docker/, k8s/, monitoring/) and the tools that check it.

Every tool is installed by the project itself (``make install`` for the ``deploy`` extra of
pyproject.toml, ``make deploy-tools`` for the ones from Debian packages); a missing one is a
loud failure that says so, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = ROOT / "k8s"
MONITORING = ROOT / "monitoring"
COMPOSE_FILE = DOCKER / "docker-compose.scale.yml"
STACK_FILE = DOCKER / "docker-stack.yml"
DOCKERFILE = DOCKER / "Dockerfile"
OVERLAYS = ("autoscaler", "hpa", "keda")
#: The oldest Kubernetes the manifests are for (the preStop `sleep` action) and the newest
#: schemas kubernetes-validate has.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

_DEBIAN_TOOLS = ROOT / ".venv" / "deploy-tools" / "bin"
_HOW = {
    "promtool": "make deploy-tools (Debian's promtool package, extracted)",
    "docker": "make deploy-tools (Debian's docker-cli package, extracted)",
    "tini": "apt-get install tini (.ci/run does it)",
    "unshare": "apt-get install util-linux",
}


def tool(name: str) -> str:
    """The path of a checker: the project's Debian extracts, the virtualenv, then PATH."""
    for directory in (_DEBIAN_TOOLS, Path(sys.executable).parent):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        how = _HOW.get(name, "make install (the 'deploy' extra of pyproject.toml)")
        raise RuntimeError(f"{name} is missing: install it with {how}")
    return found


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Runs a checker (the first argument is looked up with :func:`tool`)."""
    kwargs.setdefault("timeout", 120)
    return subprocess.run(
        [tool(argv[0]), *argv[1:]], capture_output=True, text=True, check=False, **kwargs
    )


def docker_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """An environment for the docker CLI and Compose: their own config directory (nothing
    written to ~/.docker) and the variables the kit's files interpolate."""
    config = tmp_path / "docker-config"
    config.mkdir(exist_ok=True)
    return {**os.environ, "DOCKER_CONFIG": str(config), **variables}


def compose_config(env: dict[str, str], file: Path = COMPOSE_FILE) -> dict[str, Any]:
    """``docker compose config --format json`` of ``file`` (fails on an invalid file)."""
    done = run(["docker-compose", "-f", str(file), "config", "--format", "json"], env=env)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def kustomize(overlay: str) -> list[dict[str, Any]]:
    """The manifests ``kubectl kustomize k8s/overlays/<overlay>`` renders."""
    done = run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)])
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]
