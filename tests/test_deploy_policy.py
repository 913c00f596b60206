"""Policy over the deployment kit as the platforms see it (rendered manifests, the resolved
Compose and stack files, the Dockerfile): hardened pods, probes on the right endpoints, stop
timeouts above the worker's grace period, one scaler per overlay, pinned images, secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scraperv4.settings import CoordinatorSettings, WorkerSettings, load
from support.deploy import (
    COMPOSE_FILE,
    DOCKER,
    DOCKERFILE,
    K8S,
    OVERLAYS,
    STACK_FILE,
    compose_config,
    docker_env,
    kustomize,
    run,
)

SETTINGS_FILE = DOCKER / "scraperv4.toml"
WORKER = load(WorkerSettings, config_file=SETTINGS_FILE, environ={})
COORDINATOR = load(CoordinatorSettings, config_file=SETTINGS_FILE, environ={})
#: Secrets the operator creates (docs: k8s/base/kustomization.yaml); no other may be used.
OPERATOR_SECRETS = {"scraperv4-api-token"}
#: Liveness must not depend on the queue (a Redis outage would restart every pod).
READINESS_ONLY_PATHS = {"/api/health", "/ready"}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kustomize(request.param)


def pod_specs(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["name"]: m["spec"]["template"]["spec"]
        for m in manifests
        if m["kind"] in ("Deployment", "StatefulSet")
    }


def find(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def pre_stop_seconds(container: dict[str, Any]) -> int:
    seconds: int = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    return seconds


def test_every_pod_runs_hardened(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, manifests = rendered
    namespace = find(manifests, "Namespace", "scraperv4")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    specs = pod_specs(manifests)
    assert {"scraperv4-redis", "scraperv4-coordinator", "scraperv4-worker"} <= set(specs)
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is (name == "scraperv4-autoscaler"), name
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            assert "livenessProbe" in container and "readinessProbe" in container, name
            liveness = container["livenessProbe"].get("httpGet", {}).get("path")
            assert liveness not in READINESS_ONLY_PATHS, f"{name}: liveness on {liveness}"
            image = container["image"]
            assert re.fullmatch(r"[^:@]+(:[\w.-]+|@sha256:[0-9a-f]{64})", image), image
            assert not image.endswith(":latest"), image


def test_probes_point_at_the_ports_and_paths_the_roles_serve(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, manifests = rendered
    expected = {
        "scraperv4-coordinator": (8080, "/api/live", "/api/health"),
        "scraperv4-worker": (9100, "/health", "/ready"),
        "scraperv4-autoscaler": (9200, "/health", "/health"),
    }
    for name, spec in pod_specs(manifests).items():
        if name not in expected:
            continue
        port, live, ready = expected[name]
        (container,) = spec["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", live), ("readinessProbe", ready)):
            get = container[probe]["httpGet"]
            assert (ports[get["port"]], get["path"]) == (port, path), (name, probe)


def test_stop_timeouts_leave_the_grace_period_whole(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, manifests = rendered
    specs = pod_specs(manifests)
    worker = specs["scraperv4-worker"]
    (container,) = worker["containers"]
    assert worker["terminationGracePeriodSeconds"] > WORKER.grace_period + pre_stop_seconds(
        container
    ), "SIGKILL would land inside the worker's grace period"
    coordinator = specs["scraperv4-coordinator"]
    (container,) = coordinator["containers"]
    assert coordinator["terminationGracePeriodSeconds"] > COORDINATOR.request_timeout + (
        pre_stop_seconds(container)
    )
    env = {e["name"]: e for e in worker["containers"][0]["env"]}
    assert env["WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    deployment = find(manifests, "Deployment", "scraperv4-worker")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in deployment["spec"], "the scaler owns the replica count"
    for name in ("scraperv4-worker", "scraperv4-coordinator"):
        budget = find(manifests, "PodDisruptionBudget", name)
        labels = find(manifests, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        selector = budget["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name


def test_exactly_one_scaler_per_overlay(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, manifests = rendered
    scalers = [
        m["kind"]
        for m in manifests
        if m["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
        or (m["kind"] == "Deployment" and m["metadata"]["name"] == "scraperv4-autoscaler")
    ]
    assert scalers == [
        {"autoscaler": "Deployment", "hpa": "HorizontalPodAutoscaler", "keda": "ScaledObject"}[
            overlay
        ]
    ]
    if overlay == "hpa":
        spec = find(manifests, "HorizontalPodAutoscaler", "scraperv4-worker")["spec"]
        (metric,) = spec["metrics"]
        assert metric["type"] == "External", "a cluster-wide gauge is not a per-pod metric"
        assert metric["external"]["metric"]["name"] == "scraperv4_queue_length"
        assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] >= 0
        assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
        adapter = yaml.safe_load(
            (K8S / "components" / "hpa" / "prometheus-adapter-values.yaml").read_text()
        )
        (rule,) = adapter["rules"]["external"]
        assert (
            rule["metricsQuery"].startswith("max(")
            and rule["name"]["as"] == metric["external"]["metric"]["name"]
        )
    if overlay == "keda":
        check_scaled_object(find(manifests, "ScaledObject", "scraperv4-worker"))
    if overlay == "autoscaler":
        check_autoscaler_rbac(manifests)


#: The fields of KEDA's ScaledObject (keda.sh/v1alpha1) this kit may use: kubernetes-validate
#: has no schema for a CRD, so misspellings are caught here.
_SCALED_OBJECT = {
    "spec": {
        "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
        "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced",
        "triggers",
    },
    "scaleTargetRef": {"apiVersion", "kind", "name", "envSourceContainerName"},
    "advanced": {
        "restoreToOriginalReplicaCount", "horizontalPodAutoscalerConfig", "scalingModifiers",
    },
    "horizontalPodAutoscalerConfig": {"name", "behavior"},
    "trigger": {"type", "name", "metadata", "metricType", "useCachedMetrics", "authenticationRef"},
    "prometheus": {
        "serverAddress", "query", "threshold", "activationThreshold", "namespace",
        "customHeaders", "ignoreNullValues", "unsafeSsl", "authModes", "queryParameters",
    },
}  # fmt: skip


def check_scaled_object(scaled: dict[str, Any]) -> None:
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= _SCALED_OBJECT["spec"], set(spec) - _SCALED_OBJECT["spec"]
    assert set(spec["scaleTargetRef"]) <= _SCALED_OBJECT["scaleTargetRef"]
    assert spec["scaleTargetRef"]["name"] == "scraperv4-worker"
    assert set(spec["advanced"]) <= _SCALED_OBJECT["advanced"]
    hpa = spec["advanced"]["horizontalPodAutoscalerConfig"]
    assert set(hpa) <= _SCALED_OBJECT["horizontalPodAutoscalerConfig"]
    assert {"scaleUp", "scaleDown"} == set(hpa["behavior"])
    (trigger,) = spec["triggers"]
    assert set(trigger) <= _SCALED_OBJECT["trigger"] and trigger["type"] == "prometheus"
    assert set(trigger["metadata"]) <= _SCALED_OBJECT["prometheus"]
    assert all(isinstance(v, str) for v in trigger["metadata"].values()), "KEDA takes strings"
    query = trigger["metadata"]["query"]
    assert query.startswith("max(scraperv4_queue_length") and "sum(" not in query
    assert 0 < spec["minReplicaCount"] <= spec["maxReplicaCount"]


def check_autoscaler_rbac(manifests: list[dict[str, Any]]) -> None:
    role = find(manifests, "Role", "scraperv4-autoscaler")
    rules = {
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r.get("resourceNames", ()))): set(
            r["verbs"]
        )
        for r in role["rules"]
    }
    assert rules == {
        (("apps",), ("deployments",), ("scraperv4-worker",)): {"get"},
        (("apps",), ("deployments/scale",), ("scraperv4-worker",)): {"get", "patch", "update"},
        (("",), ("pods",), ()): {"get", "patch"},
    }
    assert not any(kind == "ClusterRole" for kind in (m["kind"] for m in manifests))
    binding = find(manifests, "RoleBinding", "scraperv4-autoscaler")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "scraperv4-autoscaler", "namespace": "scraperv4"}
    ]
    spec = pod_specs(manifests)["scraperv4-autoscaler"]
    assert spec["serviceAccountName"] == "scraperv4-autoscaler"
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["SCRAPERV4_EXECUTOR"] == "kubernetes"
    assert env["SCRAPERV4_DEPLOYMENT"] == "scraperv4-worker"
    deployment = find(manifests, "Deployment", "scraperv4-autoscaler")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {
        "type": "Recreate"
    }


def test_secrets_and_network(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, manifests = rendered
    defined = {m["metadata"]["name"] for m in manifests if m["kind"] == "Secret"}
    used = {
        volume["secret"]["secretName"]
        for spec in pod_specs(manifests).values()
        for volume in spec.get("volumes", [])
        if "secret" in volume
    }
    assert used == OPERATOR_SECRETS and not defined, "no secret value is kept in the manifests"
    for name, spec in pod_specs(manifests).items():
        for volume in spec.get("volumes", []):
            mode = volume.get("secret", {}).get("defaultMode")
            if mode is not None and not mode & 0o004:  # not world-readable: the group reads it
                assert (
                    spec["securityContext"].get("fsGroup") == spec["securityContext"]["runAsGroup"]
                ), f"{name} cannot read its secret {volume['name']}"
    coordinator = pod_specs(manifests)["scraperv4-coordinator"]["containers"][0]
    env = {e["name"]: e.get("value") for e in coordinator["env"]}
    assert env["SCRAPERV4_API_TOKEN_FILE"].startswith("/var/run/secrets/scraperv4/")
    assert "SCRAPERV4_API_TOKEN" not in env
    policies = {m["metadata"]["name"]: m["spec"] for m in manifests if m["kind"] == "NetworkPolicy"}
    deny = policies["scraperv4-default-deny-ingress"]
    assert (
        deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    )
    (redis_rule,) = policies["scraperv4-redis"]["ingress"]
    assert redis_rule["from"] and redis_rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    redis = pod_specs(manifests)["scraperv4-redis"]["containers"][0]
    args = redis["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--appendonly") + 1] == "yes"


# --- Compose and Swarm ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = docker_env(
        tmp_path_factory.mktemp("docker"), SCRAPERV4_SECRETS_DIR=str(DOCKER / "secrets")
    )
    return compose_config(env)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    env = docker_env(
        tmp_path_factory.mktemp("docker"),
        SCRAPERV4_SECRETS_DIR=str(DOCKER / "secrets"),
        DOCKER_GID="999",
    )
    done = run(["docker", "stack", "config", "-c", str(STACK_FILE)], env=env)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


@pytest.mark.parametrize("file", ["compose", "stack"])
def test_compose_and_stack_fix_what_the_guide_got_wrong(
    file: str, request: pytest.FixtureRequest
) -> None:
    config: dict[str, Any] = request.getfixturevalue(file)
    services = config["services"]
    worker = services["scraperv4-worker" if file == "compose" else "worker"]
    coordinator = services["scraperv4-coordinator" if file == "compose" else "coordinator"]
    assert seconds(worker["stop_grace_period"]) > WORKER.grace_period
    assert "WORKER_ID" not in worker["environment"], "one id for every replica"
    assert coordinator["deploy"]["replicas"] >= 2 and not coordinator.get("ports")
    redis = services["redis"]["command"]
    assert redis[redis.index("--maxmemory-policy") + 1] == "noeviction"
    for name, service in services.items():
        assert "container_name" not in service, name
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)
        for port in service.get("ports", []):
            assert name in ("nginx", "grafana", "prometheus"), f"{name} publishes a port"
            if file == "compose":
                assert port["host_ip"] == "127.0.0.1", (name, port)
        if image.startswith(("scraperv4", "${")) or "scraperv4" in image:
            assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
    token_file = coordinator["environment"]["SCRAPERV4_API_TOKEN_FILE"]
    assert token_file == "/run/secrets/api_token"
    assert [s["source"] for s in coordinator["secrets"]] == ["api_token"]
    assert config["networks"]["backend"]["internal"] is True
    assert set(services["redis"]["networks"]) == {"backend"}


def test_the_swarm_autoscaler_scales_the_stacks_worker_service(stack: dict[str, Any]) -> None:
    autoscaler = stack["services"]["autoscaler"]
    assert autoscaler["environment"]["SCRAPERV4_EXECUTOR"] == "swarm"
    assert autoscaler["environment"]["SCRAPERV4_SERVICE"] == "scraperv4_worker"
    assert "node.role == manager" in autoscaler["deploy"]["placement"]["constraints"]
    assert autoscaler["user"].startswith("10001:")
    assert "coordinator" in stack["services"] and "worker" in stack["services"]


def test_the_dockerfile_builds_a_non_root_image_per_role() -> None:
    text = DOCKERFILE.read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    names = [re.match(r"\S+ AS (\S+)", s).group(1) for s in stages]  # type: ignore[union-attr]
    assert names == ["wheel", "runtime", "autoscaler"]
    for stage in stages[1:]:
        users = re.findall(r"^USER (\S+)", stage, flags=re.M)
        assert users and users[-1] == "10001:10001", "the image runs unprivileged"
    runtime = stages[1]
    assert 'ENTRYPOINT ["tini", "--", "scraperv4"]' in runtime
    assert 'CMD ["scraperv4", "healthcheck"]' in runtime
    assert "maturin build --release --locked" in stages[0]
    assert re.search(r"^ARG RUST_IMAGE=rust:[\d.]+-slim-\w+$", text, flags=re.M)
    assert re.search(r"^ARG BASE=debian:\w+-slim$", text, flags=re.M)
    ignored = (Path(DOCKERFILE).parents[1] / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") :][:1] == ["*"], "the context is an allow-list"
    assert "docker-compose.scale.yml" in COMPOSE_FILE.name
