"""nginx (Debian's package) running the repository's ``docker/nginx/nginx-scale.conf`` on
loopback ports, for the tests and the coordinator benchmark."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SCALE_CONF = Path(__file__).resolve().parents[2] / "docker" / "nginx" / "nginx-scale.conf"


def nginx_binary() -> str:
    """The nginx executable; a loud failure with the fix when it is missing."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise RuntimeError(
            "nginx is missing: install Debian's package (apt-get install nginx-light); "
            ".ci/run and `make bench` do it"
        )
    return binary


def scale_conf(root: Path, port: int, upstreams: list[int], *, rate_limits: bool = True) -> Path:
    """``nginx-scale.conf`` pointed at coordinators on ``upstreams`` (loopback ports),
    listening on ``127.0.0.1:port``, with its scratch files under ``root``. Without
    ``rate_limits`` the ``limit_req`` lines are dropped (to measure the proxy itself)."""
    text = SCALE_CONF.read_text()
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=3 fail_timeout=30s;" for p in upstreams
    )
    text, replaced = re.subn(
        r"^\s*server scraperv4-coordinator:8080[^\n]*$", servers, text, flags=re.M
    )
    if replaced != 1:
        raise RuntimeError("nginx-scale.conf no longer has the one coordinator server line")
    if not rate_limits:
        text = re.sub(r"^\s*limit_req [^\n]*$", "", text, flags=re.M)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{port};")
    text = text.replace("worker_processes auto;", "worker_processes 1;")
    scratch = "\n".join(
        f"    {kind}_temp_path {root}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", f"http {{\n{scratch}\n", 1)
    conf = root / "nginx.conf"
    conf.write_text(text)
    # nginx's workers run unprivileged: the scratch directory must be readable.
    root.chmod(0o755)
    return conf


def run_args(conf: Path, *, check_only: bool = False) -> list[str]:
    """The argv that tests (``-t``) or runs nginx in the foreground with ``conf``."""
    root = conf.parent
    globals_ = f"pid {root}/nginx.pid; error_log {root}/error.log;"
    if check_only:
        return [nginx_binary(), "-t", "-c", str(conf), "-p", str(root), "-g", globals_]
    return [nginx_binary(), "-c", str(conf), "-p", str(root), "-g", f"daemon off; {globals_}"]


def start(conf: Path) -> subprocess.Popen[bytes]:
    """Checks ``conf`` and starts nginx with it (stop it by its PID: ``terminate()``)."""
    check = subprocess.run(
        run_args(conf, check_only=True), capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise RuntimeError(f"nginx refuses the configuration:\n{check.stderr}")
    return subprocess.Popen(run_args(conf))
