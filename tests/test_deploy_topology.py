"""The Compose topology run for real, without a container engine.

Every service of ``docker compose config --format json`` is started as local processes with
its command and environment: Redis, two coordinators, three workers (the image's ENTRYPOINT,
``tini -- scraperv4``, as PID 1 of its own PID namespace, like in a container) and nginx with
the repository's config, plus a local site. Each replica gets its own loopback address
(127.N.<service>.<replica>) and sees the Compose service names through a private
``/etc/hosts`` (``unshare --mount`` + a bind mount), so the names and ports the containers use
are the ones exercised: ``redis://redis:6379/0``, nginx's ``scraperv4-coordinator:8080``.

What a container's own network namespace would give for free is done explicitly, and only
that: a wildcard listen address (``0.0.0.0:8080``, nginx's ``listen 80``) becomes the
replica's loopback address, and paths inside the container (configs, secrets, bind mounts)
become the host files Compose mounts there. The site is on loopback, which the workers'
SSRF guard refuses by default: they get ``SCRAPERV4_ALLOWED_HOSTS=shop``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from scraperv4.demo import DemoSite
from scraperv4.queue import JobQueue
from scraperv4.settings import CoordinatorSettings, WorkerSettings, load
from scraperv4.worker import export_jsonl
from support.deploy import DOCKER, DOCKERFILE, compose_config, docker_env, tool
from support.nginx import nginx_binary

pytestmark = pytest.mark.slow

#: Processes started per service, as `deploy.replicas` says.
ROLES = {"scraperv4-coordinator": CoordinatorSettings, "scraperv4-worker": WorkerSettings}


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Polls ``condition`` until it returns something true; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def entrypoint() -> list[str]:
    """The runtime image's ENTRYPOINT, from the Dockerfile."""
    runtime = DOCKERFILE.read_text().split("AS runtime", 1)[1].split("\nFROM ", 1)[0]
    match = re.search(r"^ENTRYPOINT (\[.*\])$", runtime, flags=re.M)
    assert match, "the runtime stage has an exec-form ENTRYPOINT"
    argv: list[str] = json.loads(match.group(1))
    return argv


class Replica:
    """One container's worth of processes: ``argv`` as PID 1 of new PID, mount and UTS
    namespaces, with ``hosts`` bind-mounted on /etc/hosts and a hostname of its own (Docker
    names a container's host after its id)."""

    def __init__(
        self, name: str, address: str, *, argv: list[str], env: dict[str, str], hosts: Path,
        log: Path,
    ) -> None:  # fmt: skip
        self.name, self.address, self.env, self.log = name, address, env, log
        self.hostname = f"{random.getrandbits(48):012x}"
        setup = 'hostname "$0" && mount --bind "$1" /etc/hosts && shift && exec "$@"'
        wrapper = [
            tool("unshare"), "--mount", "--propagation", "private", "--uts", "--pid", "--fork",
            "--kill-child", "--", "/bin/sh", "-c", setup, self.hostname, str(hosts), *argv,
        ]  # fmt: skip
        with open(log, "ab") as out:
            self.process = subprocess.Popen(wrapper, env=env, stdout=out, stderr=out)

    def pid1(self) -> int:
        """The host PID of the namespace's PID 1 (what a container's stop signal reaches)."""

        def child() -> Optional[int]:
            path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            children = path.read_text().split() if path.exists() else []
            return int(children[0]) if children else None

        found: int = wait_until(child, 10, f"{self.name}'s PID 1")
        return found

    def signal(self, signum: int) -> None:
        os.kill(self.pid1(), signum)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # --kill-child: its namespace goes with it
            self.process.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Topology:
    """The Compose file's services started as :class:`Replica` processes."""

    def __init__(self, config: dict[str, Any], work: Path, site_port: int) -> None:
        self.config = config
        self.work = work
        self.octet = random.randint(100, 199)  # two runs at once do not collide
        self.addresses: dict[str, list[str]] = {}
        for index, (name, service) in enumerate(sorted(config["services"].items()), start=1):
            replicas = (service.get("deploy") or {}).get("replicas") or 1
            self.addresses[name] = [f"127.{self.octet}.{index}.{r}" for r in range(1, replicas + 1)]
        self.hosts = work / "hosts"
        lines = [Path("/etc/hosts").read_text().rstrip("\n")]
        lines += [f"{a} {name}" for name, addresses in self.addresses.items() for a in addresses]
        lines.append("127.0.0.1 shop")
        self.hosts.write_text("\n".join(lines) + "\n")
        self.site_port = site_port
        self.replicas: dict[str, list[Replica]] = {}

    def mounts(self, service: dict[str, Any]) -> dict[str, str]:
        """Container path -> host path: bind volumes, configs and secrets."""
        found = {
            v["target"]: v["source"] for v in service.get("volumes", []) if v["type"] == "bind"
        }
        for config in service.get("configs", []):
            found[config["target"]] = self.config["configs"][config["source"]]["file"]
        for secret in service.get("secrets", []):
            target = secret.get("target") or f"/run/secrets/{secret['source']}"
            found[target] = self.config["secrets"][secret["source"]]["file"]
        return found

    def environment(self, name: str, service: dict[str, Any], address: str) -> dict[str, str]:
        mounts = self.mounts(service)
        # The image's PATH starts with its virtualenv's bin (Dockerfile ENV); here, ours.
        env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "LANG": "C.UTF-8"}  # fmt: skip
        for key, value in (service.get("environment") or {}).items():
            mapped = value
            if value.startswith("/"):
                target = next((t for t in mounts if value == t or value.startswith(t + "/")), None)
                assert target, (
                    f"{name}: {key}={value} is a path no volume, config or secret provides"
                )
                mapped = mounts[target] + value[len(target) :]
            env[key] = mapped
        model = ROLES.get(name)
        if model is not None:
            settings = load(model, environ=env)
            setting = "addr" if model is CoordinatorSettings else "metrics_addr"
            bound = getattr(settings, setting)
            assert bound.startswith("0.0.0.0:"), f"{name} listens on {bound} in its container"
            env[f"SCRAPERV4_{setting.upper()}"] = f"{address}:{bound.split(':')[1]}"
        if name == "scraperv4-worker":
            env["SCRAPERV4_ALLOWED_HOSTS"] = "shop"
        return env

    def command(self, name: str, service: dict[str, Any], address: str) -> list[str]:
        if name == "redis":
            data = self.work / f"redis-{address}"
            data.mkdir()
            return [*service["command"], "--bind", address, "--dir", str(data)]
        if name == "nginx":
            source = self.mounts(service)["/etc/nginx/nginx.conf"]
            conf = self.work / "nginx" / address / "nginx.conf"
            conf.parent.mkdir(parents=True)
            text = Path(source).read_text()
            assert text.count("listen 80;") == 1
            text = text.replace("listen 80;", f"listen {address}:80;")
            scratch = "".join(
                f"    {kind}_temp_path {conf.parent}/{kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            conf.write_text(text.replace("http {\n", "http {\n" + scratch, 1))
            conf.parent.chmod(0o755)
            globals_ = (
                f"daemon off; pid {conf.parent}/nginx.pid; error_log {conf.parent}/error.log;"
            )
            return [nginx_binary(), "-c", str(conf), "-p", str(conf.parent), "-g", globals_]
        assert service.get("command") is None and service.get("entrypoint") is None, name
        argv = entrypoint()
        argv[0] = tool(argv[0])
        return argv

    def healthy(self, name: str, replica: Replica) -> bool:
        """The service's Compose healthcheck, run against this replica."""
        check = self.config["services"][name].get("healthcheck")
        if check is None:
            return True
        assert check["test"][0] == "CMD", check
        argv = list(check["test"][1:])
        if name == "redis":
            argv[1:1] = ["-h", replica.address]  # a container's loopback is its own
        done = subprocess.run(argv, env=replica.env, capture_output=True, check=False, timeout=30)
        return done.returncode == 0

    def start(self, name: str) -> None:
        service = self.config["services"][name]
        for dependency, condition in (service.get("depends_on") or {}).items():
            if dependency not in self.replicas:
                self.start(dependency)
            if condition["condition"] == "service_healthy":
                for replica in self.replicas[dependency]:
                    wait_until(
                        lambda d=dependency, r=replica: self.healthy(d, r),
                        60,
                        f"{dependency} healthy",
                    )
        started = []
        for address in self.addresses[name]:
            log = self.work / f"{name}-{address}.log"
            env = self.environment(name, service, address)
            started.append(
                Replica(
                    name,
                    address,
                    argv=self.command(name, service, address),
                    env=env,
                    hosts=self.hosts,
                    log=log,
                )
            )
        self.replicas[name] = started
        for replica in started:
            wait_until(
                lambda r=replica: self.healthy(name, r) or r.process.poll() is not None, 60, name
            )
            assert replica.process.poll() is None, f"{name} exited:\n{replica.output()}"

    def stop(self) -> None:
        for replicas in self.replicas.values():
            for replica in replicas:
                replica.stop()


def http(method: str, url: str, token: Optional[str] = None, body: Any = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)  # noqa: S310
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with _DIRECT.open(request, data, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:  # not listening (yet, or any more)
        return 0, b""


#: No proxy from the environment: everything here is on loopback.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[tuple[Topology, DemoSite, str]]:
    secrets = tmp_path / "secrets"
    subprocess.run(
        [str(DOCKER / "init-secrets.sh")],
        env={**os.environ, "SCRAPERV4_SECRETS_DIR": str(secrets)},
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    token = (secrets / "api_token").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    config = compose_config(docker_env(tmp_path, SCRAPERV4_SECRETS_DIR=str(secrets)))
    for unused in ("prometheus", "grafana"):  # checked by promtool and the dashboard test
        config["services"].pop(unused)
    with DemoSite(categories=3, products_per_category=20, page_size=5, latency=0.3) as site:
        port = int(site.url.rsplit(":", 1)[1].strip("/"))
        fleet = Topology(config, tmp_path, port)
        try:
            for name in ("redis", "scraperv4-coordinator", "scraperv4-worker", "nginx"):
                if name not in fleet.replicas:
                    fleet.start(name)
            nginx = fleet.addresses["nginx"][0]
            wait_until(lambda: http("GET", f"http://{nginx}/health")[0] == 200, 60, "nginx")
            yield fleet, site, token
        finally:
            fleet.stop()


def test_the_compose_topology_runs_crawls_and_survives_failures(
    topology: tuple[Topology, DemoSite, str],
) -> None:
    fleet, site, token = topology
    assert [
        len(fleet.replicas[n])
        for n in ("redis", "scraperv4-coordinator", "scraperv4-worker", "nginx")
    ] == [1, 2, 3, 1]
    api = f"http://{fleet.addresses['nginx'][0]}"
    # Progress is polled from the coordinator that stays up: nginx allows 30 API reads a
    # minute per client (api_limit), and that limit is not what this test is about.
    direct = f"http://{fleet.replicas['scraperv4-coordinator'][1].address}:8080"
    seed = {
        "target_url": f"http://shop:{fleet.site_port}/",
        "template_id": "demo-products",
        "id": "crawl",
    }

    # Inside a replica the service name resolves to every coordinator, as Docker's DNS does:
    # nginx's upstream has them all.
    resolve = subprocess.run(
        [tool("unshare"), "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
         'mount --bind "$0" /etc/hosts && exec getent ahostsv4 scraperv4-coordinator',
         str(fleet.hosts)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    resolved = {line.split()[0] for line in resolve.stdout.splitlines()}
    assert resolved == set(fleet.addresses["scraperv4-coordinator"]), resolve.stdout

    status, _ = http("POST", f"{api}/api/scraping/start", body=seed)
    assert status == 401, "no token, no job"
    assert http("GET", f"{api}/api/queue/stats")[0] == 401, "reads are protected too"
    status, body = http("POST", f"{api}/api/scraping/start", token, seed)
    assert status == 201, body
    # No WORKER_ID in the Compose file: each replica has its own id all the same.
    status, body = http("GET", f"{direct}/api/workers", token)
    ids = sorted(w["id"] for w in json.loads(body)["workers"])
    hosts = sorted(r.hostname for r in fleet.replicas["scraperv4-worker"])
    assert [i.rsplit("-", 1)[0] for i in ids] == hosts, ids

    def stats() -> dict[str, Any]:
        status, body = http("GET", f"{direct}/api/queue/stats", token)
        assert status == 200, body
        result: dict[str, Any] = json.loads(body)
        return result

    # Mid-crawl: a worker holding jobs gets its container's stop signal, and one
    # coordinator is killed.
    def busiest() -> Optional[Replica]:
        workers = json.loads(http("GET", f"{direct}/api/workers", token)[1])["workers"]
        holding = sorted((len(w["jobs"]), w["id"]) for w in workers if w["jobs"])
        if not holding:
            return None
        worker_id = holding[-1][1]
        replicas = fleet.replicas["scraperv4-worker"]
        return next(r for r in replicas if worker_id.startswith(f"{r.hostname}-"))

    leaving: Replica = wait_until(busiest, 60, "a worker holding jobs")
    leaving.signal(signal.SIGTERM)
    killed = fleet.replicas["scraperv4-coordinator"][0]
    killed.signal(signal.SIGKILL)
    assert leaving.process.wait(timeout=60) == 0, leaving.output()
    stopped = re.search(r"stopped: (\d+) completed, \d+ failed, (\d+) released", leaving.output())
    assert stopped and int(stopped[1]) + int(stopped[2]) > 0, leaving.output()
    killed.process.wait(timeout=30)
    for _ in range(5):  # nginx skips the dead coordinator (proxy_next_upstream)
        assert http("GET", f"{api}/api/queue/stats", token)[0] == 200

    def finished() -> bool:
        by_status = stats()["by_status"]
        busy = sum(by_status.get(s, 0) for s in ("pending", "assigned", "running", "retrying"))
        return busy == 0 and by_status.get("completed", 0) == site.page_count

    wait_until(finished, 120, f"the crawl of {site.page_count} pages to finish")
    assert stats()["by_status"].get("failed", 0) == 0

    queue = JobQueue(f"redis://{fleet.addresses['redis'][0]}:6379/0")
    items_file = fleet.work / "items.jsonl"
    assert export_jsonl(queue, items_file) == site.expected_items
    items = [json.loads(line)["fields"] for line in items_file.read_text().splitlines()]
    base = f"http://shop:{fleet.site_port}"
    expected = [p.as_item(base) for p in site.products.values()]
    assert sorted(items, key=lambda i: i["sku"]) == sorted(expected, key=lambda i: i["sku"])

    def metrics() -> bool:
        status, body = http("GET", f"{api}/metrics")
        return status == 200 and b"\nscraperv4_queue_length 0\n" in body

    wait_until(metrics, 30, "the queue series on /metrics through nginx")
    for replica in set(fleet.replicas["scraperv4-worker"]) - {leaving}:  # their own series
        status, body = http("GET", f"http://{replica.address}:9100/metrics")
        label = f'scraperv4_worker_jobs_in_flight{{worker="{replica.hostname}-'.encode()
        assert status == 200 and label in body, body[:300]

    # A burst on the submit route: nginx answers 429 past its limit.
    answers = [http("POST", f"{api}/api/scraping/start", token, seed)[0] for _ in range(30)]
    assert 429 in answers and set(answers) <= {201, 429}, answers
