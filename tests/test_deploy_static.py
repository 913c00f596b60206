"""The deployment kit checked by the tools its platforms use, offline: hadolint, yamllint, the
Compose v2 binary, ``docker stack config``, ``kubectl kustomize`` + ``kubernetes-validate
--strict``, promtool, the generated Grafana dashboard. Each checker is also shown to reject a
broken copy, so a pass means something."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.deploy import (
    COMPOSE_FILE,
    DOCKER,
    DOCKERFILE,
    K8S,
    KUBERNETES_VERSIONS,
    MONITORING,
    OVERLAYS,
    ROOT,
    STACK_FILE,
    docker_env,
    run,
)

SECRETS = {"SCRAPERV4_SECRETS_DIR": str(DOCKER / "secrets"), "DOCKER_GID": "999"}


def test_hadolint_passes_the_dockerfile_and_rejects_latest(tmp_path: Path) -> None:
    config = str(DOCKER / ".hadolint.yaml")
    done = run(["hadolint", "--config", config, str(DOCKERFILE)])
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("ARG BASE=debian:trixie-slim", "ARG BASE"))
    broken.write_text(broken.read_text().replace("FROM ${BASE} AS runtime", "FROM debian"))
    done = run(["hadolint", "--config", config, str(broken)])
    assert done.returncode != 0 and "DL3006" in done.stdout, done.stdout


def test_yamllint_passes_every_yaml_file_of_the_kit() -> None:
    files = [
        str(p)
        for top in (DOCKER, K8S, MONITORING)
        for p in sorted(top.rglob("*.y*ml"))
        if p.suffix in (".yml", ".yaml")
    ]
    assert len(files) > 15, files
    done = run(["yamllint", "--strict", "-c", str(ROOT / ".yamllint.yaml"), *files])
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_file_is_valid_for_compose_v2(tmp_path: Path) -> None:
    env = docker_env(tmp_path, **SECRETS)
    done = run(["docker-compose", "version"], env=env)
    assert done.returncode == 0 and "Docker Compose version" in done.stdout, done.stdout
    done = run(["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"], env=env)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("stop_grace_period:", "stop_grace_priod:"))
    done = run(["docker-compose", "-f", str(broken), "config", "-q"], env=env)
    assert done.returncode != 0 and "stop_grace_priod" in done.stderr, done.stderr


def test_the_stack_file_is_valid_for_swarm(tmp_path: Path) -> None:
    env = docker_env(tmp_path, **SECRETS)
    done = run(["docker", "stack", "config", "-c", str(STACK_FILE)], env=env)
    assert done.returncode == 0, done.stderr
    stack = yaml.safe_load(done.stdout)
    assert stack["services"]["autoscaler"]["user"] == "10001:999"
    # The Compose file is not a stack file (depends_on conditions), and typos are refused.
    done = run(["docker", "stack", "config", "-c", str(COMPOSE_FILE)], env=env)
    assert done.returncode != 0, done.stdout
    broken = tmp_path / "stack.yml"
    broken.write_text(STACK_FILE.read_text().replace("stop_grace_period:", "stop_grace_priod:"))
    done = run(["docker", "stack", "config", "-c", str(broken)], env=env)
    assert done.returncode != 0 and "stop_grace_priod" in done.stderr, done.stderr
    # DOCKER_GID is required: the autoscaler must be in the socket's group.
    env.pop("DOCKER_GID")
    done = run(["docker", "stack", "config", "-c", str(STACK_FILE)], env=env)
    assert done.returncode != 0 and "DOCKER_GID" in done.stderr, done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_validates_strictly(overlay: str, tmp_path: Path) -> None:
    done = run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)])
    assert done.returncode == 0, done.stderr
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(done.stdout)
    for version in KUBERNETES_VERSIONS:
        done = run(["kubernetes-validate", "--strict", "-k", version, str(rendered)])
        warnings = [
            line for line in done.stdout.splitlines() + done.stderr.splitlines()
            if line.startswith(("WARN", "ERROR"))
        ]  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        # Only KEDA's ScaledObject (a CRD) has no schema here: test_deploy_policy checks it.
        assert all("ScaledObject" in line for line in warnings), warnings
    # --strict rejects what a plain validation lets through (a misspelled field).
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        rendered.read_text().replace("readOnlyRootFilesystem:", "readOnlyRootFilesytem:")
    )
    assert run(["kubernetes-validate", str(broken)]).returncode == 0, "plain passes it"
    done = run(["kubernetes-validate", "--strict", str(broken)])
    assert done.returncode != 0 and "readOnlyRootFilesytem" in done.stdout, done.stdout


def _with_rules_from_repo(config: Path, tmp_path: Path) -> Path:
    """The Prometheus config with its rule_files pointing where the Compose file mounts the
    repository's rules from (monitoring/rules -> /etc/prometheus/rules)."""
    text = config.read_text()
    assert "/etc/prometheus/rules/*.yml" in text
    copy = tmp_path / config.name
    copy.write_text(text.replace("/etc/prometheus/rules/", f"{MONITORING / 'rules'}/"))
    return copy


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-swarm.yml"])
def test_promtool_checks_the_prometheus_configs_with_their_rules(name: str, tmp_path: Path) -> None:
    done = run(
        ["promtool", "check", "config", str(_with_rules_from_repo(MONITORING / name, tmp_path))]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"SUCCESS: \d+ rules found", done.stdout), done.stdout


def test_promtool_rule_unit_tests_pass_and_catch_a_sum(tmp_path: Path) -> None:
    rules = MONITORING / "rules" / "scraperv4.rules.yml"
    assert run(["promtool", "check", "rules", str(rules)]).returncode == 0
    tests = MONITORING / "tests" / "scraperv4.rules.test.yml"
    done = run(["promtool", "test", "rules", str(tests)])
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
    # The same tests fail on rules that add up the exporters' copies of the queue length.
    (tmp_path / "rules").mkdir()
    text = rules.read_text()
    assert "max(scraperv4_queue_length)" in text
    (tmp_path / "rules" / rules.name).write_text(
        text.replace("max(scraperv4_queue_length)", "sum(scraperv4_queue_length)")
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / tests.name).write_text(tests.read_text())
    done = run(["promtool", "test", "rules", str(tmp_path / "tests" / tests.name)])
    failures = done.stdout + done.stderr
    assert done.returncode != 0 and "scraperv4:queue_length:max" in failures, failures


def test_the_grafana_dashboard_is_the_generator_output() -> None:
    generator = MONITORING / "grafana" / "dashboard.py"
    done = subprocess.run(
        [sys.executable, str(generator)], capture_output=True, text=True, check=True, timeout=60
    )
    checked_in = (MONITORING / "grafana" / "dashboards" / "scraperv4.json").read_text()
    assert done.stdout == checked_in, f"regenerate: python {generator} > dashboards/scraperv4.json"
    assert "sum(" not in checked_in, "the queue's series are aggregated with max()"


def test_the_settings_files_are_valid_for_every_role_and_the_copies_agree() -> None:
    settings = DOCKER / "scraperv4.toml"
    assert (K8S / "base" / "scraperv4.toml").read_text() == settings.read_text()
    template = DOCKER / "templates" / "demo-products.json"
    assert (K8S / "base" / "templates" / template.name).read_bytes() == template.read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "scraperv4", "config", "check", str(settings)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
