"""The settings model: layers and their precedence, every setting from the environment,
secrets from files, errors naming their source, unknown variables, ``config show`` /
``check`` / ``docs`` — through the API and the real CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from scraperv4.exceptions import ConfigError, SettingsError
from scraperv4.queue import JobQueue
from scraperv4.settings import (
    ROLES,
    AutoscalerSettings,
    CoordinatorSettings,
    RunSettings,
    WorkerSettings,
    load,
    specs,
)
from scraperv4.settings._render import reference
from scraperv4.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "scraperv4"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any setting variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPERV4_")}
    env.pop("REDIS_URL", None)
    env.pop("WORKER_ID", None)
    return {**env, **extra}


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, check=False,
        env=clean_env(**env),
    )  # fmt: skip


def show(*args: str, **env: str) -> dict[str, dict[str, str]]:
    done = run_cli("config", "show", "--json", *args, **env)
    assert done.returncode == 0, done.stderr
    return {row["setting"]: row for row in json.loads(done.stdout)}


# --- precedence ----------------------------------------------------------------------------


def test_each_layer_wins_over_the_one_below(tmp_path: Path) -> None:
    config = tmp_path / "scraperv4.toml"
    config.write_text(
        "[queue]\nlease = 90\n\n[politeness]\ndelay = [1, 3]\n\n"
        "[worker]\nconcurrency = 10\ngrace_period = 11\nheartbeat = '12s'\nidle_poll = 0.25\n"
    )
    env = {
        "SCRAPERV4_CONFIG": str(config),
        "SCRAPERV4_CONCURRENCY": "20",
        "SCRAPERV4_GRACE_PERIOD": "21",
        "SCRAPERV4_HEARTBEAT": "22",
    }
    settings = load(
        WorkerSettings,
        environ=env,
        flags={"concurrency": ("30", "--concurrency"), "grace_period": ("31", "--grace-period")},
        overrides={"concurrency": 40},
    )
    assert (settings.concurrency, str(settings.source("concurrency"))) == (
        40, "argument concurrency"
    )  # fmt: skip
    assert (settings.grace_period, str(settings.source("grace_period"))) == (
        31.0, "flag --grace-period"
    )  # fmt: skip
    assert (settings.heartbeat, str(settings.source("heartbeat"))) == (
        22.0, "env SCRAPERV4_HEARTBEAT"
    )  # fmt: skip
    assert (settings.idle_poll, str(settings.source("idle_poll"))) == (
        0.25, f"file {config} [worker]"
    )  # fmt: skip
    assert (settings.lease, str(settings.source("lease"))) == (90.0, f"file {config} [queue]")
    assert settings.delay == (1.0, 3.0)
    assert (settings.job_timeout, str(settings.source("job_timeout"))) == (3600.0, "default")


def test_a_roles_table_wins_over_the_shared_sections_and_other_roles_tables_are_ignored(
    tmp_path: Path,
) -> None:
    config = tmp_path / "all-roles.yaml"
    config.write_text(
        "fetch:\n  allow_private_networks: false\n"
        "worker:\n  allow_private_networks: true\n  concurrency: 8\n"
        "run:\n  concurrency: 3\n"
        "coordinator:\n  addr: 127.0.0.1:8081\n"
    )
    worker = load(WorkerSettings, config_file=config, environ={})
    run = load(RunSettings, config_file=config, environ={})
    assert (worker.allow_private_networks, worker.concurrency) == (True, 8)
    assert (run.allow_private_networks, run.concurrency) == (False, 3)
    assert str(run.source("allow_private_networks")) == f"file {config} [fetch]"


def test_the_cli_reads_file_env_and_flags_in_that_order(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text("[worker]\nconcurrency = 10\nclaim_batch = 7\nexit_when_done = true\n")
    rows = show(
        "--role", "worker", "--config", str(config), "--concurrency", "30",
        "--no-exit-when-done",
        SCRAPERV4_CONCURRENCY="20", SCRAPERV4_GRACE_PERIOD="5m",
    )  # fmt: skip
    assert (rows["concurrency"]["value"], rows["concurrency"]["source"]) == (
        "30",
        "flag --concurrency",
    )
    assert (rows["grace_period"]["value"], rows["grace_period"]["source"]) == (
        "300", "env SCRAPERV4_GRACE_PERIOD"
    )  # fmt: skip
    assert rows["claim_batch"]["source"] == f"file {config} [worker]"
    assert rows["exit_when_done"]["value"] == "false"
    assert rows["exit_when_done"]["source"] == "flag --no-exit-when-done"
    assert rows["lease"]["source"] == "default"


def test_python_keyword_arguments_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRAPERV4_CONCURRENCY", "64")
    monkeypatch.setenv("SCRAPERV4_ALLOW_PRIVATE_NETWORKS", "true")
    from_env = Worker(JobQueue("memory://"), worker_id="w-env")
    assert from_env.settings.concurrency == 64
    assert from_env.fetch_config.allow_private_networks is True
    assert from_env.fetch_config.concurrency == 64
    explicit = Worker(JobQueue("memory://"), worker_id="w-arg", concurrency=5)
    assert explicit.settings.concurrency == 5
    assert str(explicit.settings.source("concurrency")) == "argument concurrency"


# --- every setting from the environment ---------------------------------------------------

#: A valid value other than the default, as a variable would hold it, and the typed result.
SAMPLES: dict[str, tuple[str, Any]] = {
    "queue_url": ("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0"),
    "queue_name": ("crawl-2", "crawl-2"),
    "queue_prefix": ("sv4", "sv4"),
    "allowed_networks": ("10.0.0.0/8, 192.168.0.0/16", ["10.0.0.0/8", "192.168.0.0/16"]),
    "allowed_hosts": ('["intranet.example"]', ["intranet.example"]),
    "user_agent": ("agent/1.0", "agent/1.0"),
    "proxy": ("http://user:pw@127.0.0.1:3128", "http://user:pw@127.0.0.1:3128"),
    "ca_file": ("/etc/ca.pem", "/etc/ca.pem"),
    "headers": ('{"X-Team": "data"}', {"X-Team": "data"}),
    "header_origins": ("https://api.example.com", ["https://api.example.com"]),
    "delay": ("1,3", (1.0, 3.0)),
    "per_host_concurrency": ("3", 3),
    "metrics_addr": ("127.0.0.1:9999", "127.0.0.1:9999"),
    "log_level": ("debug", "debug"),
    "worker_id": ("w-7", "w-7"),
    "templates": ("/templates", "/templates"),
    "claim_batch": ("5", 5),
    "addr": ("127.0.0.1:8081", "127.0.0.1:8081"),
    "api_token": ("t" * 20, "t" * 20),
    "cors_origins": (
        "https://a.example,https://b.example",
        ["https://a.example", "https://b.example"],
    ),
    "worker_args": (
        "--concurrency 4 --fixed-concurrency",
        ["--concurrency", "4", "--fixed-concurrency"],
    ),
    "service": ("fleet_worker", "fleet_worker"),
    "deployment": ("fleet", "fleet"),
    "namespace": ("scraping", "scraping"),
    "output": ("out.jsonl", "out.jsonl"),
    "state": ("/var/lib/sv4/state.db", "/var/lib/sv4/state.db"),
    "domain_delay": ("1500ms", 1.5),
    "domain_concurrency": ("4", 4),
    "autothrottle": ("2.5", 2.5),
    "max_domain_delay": ("2m", 120.0),
    "dedup_error_rate": ("0.001", 0.001),
    "revisit": ("24h", 86400.0),
    "dedup_bucket": ("6h", 21600.0),
    "dedup_ignore_params": ("utm_*,ref", ["utm_*", "ref"]),
    "results_max_len": ("100000", 100000),
    "shards": ("3", 3),
}


def sample(role: str, name: str) -> tuple[str, Any]:
    spec = specs(ROLES[role])[name]
    if name in SAMPLES:
        return SAMPLES[name]
    default = spec.default
    if spec.kind == "bool":
        return ("false" if default else "true", not default)
    if spec.kind == "choice":
        options = typing.get_args(ROLES[role].model_fields[name].annotation)
        other = next(o for o in options if o != default)
        return other, other
    if spec.kind == "int":
        return str(default + 1), default + 1
    if spec.kind == "seconds":
        return f"{int(default * 1000) + 1500}ms", default + 1.5
    if spec.kind == "float":
        return str(default + 1 if default < 99 else default - 1), float(
            default + 1 if default < 99 else default - 1
        )
    raise AssertionError(f"no sample value for {role}.{name}: add one to SAMPLES")


@pytest.mark.parametrize("role", list(ROLES))
def test_every_setting_is_reachable_from_the_environment(role: str) -> None:
    model = ROLES[role]
    for name, spec in specs(model).items():
        text, expected = sample(role, name)
        settings = load(model, environ={spec.env: text})
        assert getattr(settings, name) == expected, name
        assert str(settings.source(name)) == f"env {spec.env}", name
        assert not settings.from_default(name)
    # And all of them at once (no two samples contradict each other).
    everything = {spec.env: sample(role, name)[0] for name, spec in specs(model).items()}
    settings = load(model, environ=everything)
    assert all(s.kind == "env" for s in (settings.source(n) for n in specs(model)))


def test_older_variable_names_still_work_and_the_new_name_wins() -> None:
    old = load(WorkerSettings, environ={"REDIS_URL": "redis://127.0.0.1:2/0", "WORKER_ID": "w"})
    assert old.queue_url == "redis://127.0.0.1:2/0" and old.worker_id == "w"
    assert str(old.source("queue_url")) == "env REDIS_URL"
    both = load(
        WorkerSettings,
        environ={"REDIS_URL": "redis://127.0.0.1:2/0", "SCRAPERV4_QUEUE_URL": "memory://"},
    )
    assert both.queue_url == "memory://"


# --- secrets from files -------------------------------------------------------------------


def test_secrets_come_from_files_named_by_FILE_variables(tmp_path: Path) -> None:  # noqa: N802
    token, url = tmp_path / "token", tmp_path / "redis-url"
    token.write_text("s3cret-token-0123456789\n")  # a mounted secret ends with a newline
    url.write_text("redis://:pw@127.0.0.1:6379/0\n")
    settings = load(
        CoordinatorSettings,
        environ={"SCRAPERV4_API_TOKEN_FILE": str(token), "REDIS_URL_FILE": str(url)},
    )
    assert settings.api_token == "s3cret-token-0123456789"
    assert settings.queue_url == "redis://:pw@127.0.0.1:6379/0"
    assert str(settings.source("api_token")) == f"env SCRAPERV4_API_TOKEN_FILE ({token})"
    with pytest.raises(
        SettingsError, match="both SCRAPERV4_API_TOKEN and SCRAPERV4_API_TOKEN_FILE"
    ):
        load(
            CoordinatorSettings,
            environ={"SCRAPERV4_API_TOKEN": "x" * 16, "SCRAPERV4_API_TOKEN_FILE": str(token)},
        )
    with pytest.raises(SettingsError, match="SCRAPERV4_API_TOKEN_FILE") as missing:
        load(CoordinatorSettings, environ={"SCRAPERV4_API_TOKEN_FILE": str(tmp_path / "nope")})
    assert "nope" in str(missing.value)


def test_a_token_file_guards_a_real_coordinator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error
    import urllib.request

    from scraperv4.coordinator import Coordinator

    token = tmp_path / "token"
    token.write_text("file-token-0123456789\n")
    monkeypatch.setenv("SCRAPERV4_API_TOKEN_FILE", str(token))
    body = json.dumps({"jobs": [{"target_url": "https://example.com/", "template_id": "t"}]})

    def post(address: str, bearer: str) -> int:
        request = urllib.request.Request(
            f"http://{address}/api/scraping/start", data=body.encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (http)
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    with Coordinator(JobQueue("memory://"), "127.0.0.1:0") as server:
        address = str(server.address)
        assert post(address, "wrong-token-0123456789") == 403
        assert post(address, "file-token-0123456789") == 201


# --- errors name the setting, its source and what is accepted ------------------------------


def test_a_bad_value_in_each_layer_is_named_with_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[worker]\nconcurrency = 'lots'\n")
    with pytest.raises(SettingsError) as from_file:
        load(WorkerSettings, config_file=config, environ={})
    assert f"from config file {config} [worker]" in str(from_file.value)
    assert "accepted: an integer from 1 to 10000" in str(from_file.value)

    with pytest.raises(SettingsError) as from_env:
        load(WorkerSettings, environ={"SCRAPERV4_LEASE": "soon"})
    assert "lease = 'soon' from environment variable SCRAPERV4_LEASE" in str(from_env.value)
    assert from_env.value.errors[0]["setting"] == "lease"

    flag = run_cli("worker", "--queue", "memory://", "--templates", str(tmp_path),
                   "--metrics-addr", "localhost")  # fmt: skip
    assert flag.returncode == 2, flag.stderr
    assert "metrics_addr = 'localhost' from flag --metrics-addr" in flag.stderr
    assert "Traceback" not in flag.stderr

    monkeypatch.setenv("SCRAPERV4_CONCURRENCY", "64")
    with pytest.raises(ConfigError, match="concurrency = 0 from keyword argument concurrency"):
        Worker(JobQueue("memory://"), concurrency=0)


def test_rules_between_settings_name_both_and_secrets_are_not_echoed() -> None:
    with pytest.raises(SettingsError) as beat:
        load(WorkerSettings, environ={"SCRAPERV4_LEASE": "10", "SCRAPERV4_HEARTBEAT": "20"})
    message = str(beat.value)
    assert "SCRAPERV4_HEARTBEAT" in message and "SCRAPERV4_LEASE" in message
    # The default heartbeat shrinks to fit a short lease instead of failing.
    assert load(WorkerSettings, environ={"SCRAPERV4_LEASE": "10"}).effective_heartbeat() == 5
    with pytest.raises(SettingsError) as scaling:
        load(
            AutoscalerSettings, environ={"SCRAPERV4_MIN_WORKERS": "9", "SCRAPERV4_MAX_WORKERS": "3"}
        )
    assert "SCRAPERV4_MIN_WORKERS" in str(scaling.value) or "SCRAPERV4_MAX_WORKERS" in str(
        scaling.value
    )
    with pytest.raises(SettingsError) as short:
        load(CoordinatorSettings, environ={"SCRAPERV4_API_TOKEN": "hunter2"})
    assert "hunter2" not in str(short.value) and "api_token = ***" in str(short.value)


def test_config_files_with_mistakes_are_refused_with_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("[worker]\nconcurency = 8\n\n[fetch]\nlease = 5\n\n[polite]\n")
    with pytest.raises(SettingsError) as error:
        load(WorkerSettings, config_file=config, environ={})
    message = str(error.value)
    assert "unknown setting concurency in [worker] (did you mean concurrency?)" in message
    assert "lease is not a [fetch] setting; it belongs in [queue]" in message
    assert "unknown setting or table polite (did you mean politeness?)" in message
    broken = tmp_path / "broken.yaml"
    broken.write_text("worker: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load(WorkerSettings, config_file=broken, environ={})
    with pytest.raises(ConfigError, match=r"expected a \.toml, \.yaml or \.yml file"):
        load(WorkerSettings, config_file=tmp_path / "x.ini", environ={})


# --- unknown variables --------------------------------------------------------------------


def test_unknown_variables_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="scraperv4.settings"):
        load(WorkerSettings, environ={"SCRAPERV4_CONCURENCY": "8", "SCRAPERV4_ROLE": "worker"})
    warned = [r.getMessage() for r in caplog.records]
    assert any("SCRAPERV4_CONCURENCY" in m and "SCRAPERV4_CONCURRENCY" in m for m in warned)
    assert not any("SCRAPERV4_ROLE" in m for m in warned)
    cli = run_cli("config", "show", SCRAPERV4_ALLOW_PRIVATE_NETWORK="true")
    assert cli.returncode == 0
    assert "unknown environment variable SCRAPERV4_ALLOW_PRIVATE_NETWORK ignored" in cli.stderr
    assert "did you mean SCRAPERV4_ALLOW_PRIVATE_NETWORKS?" in cli.stderr


# --- config show / check / docs -----------------------------------------------------------


def test_config_show_masks_passwords_and_tokens(tmp_path: Path) -> None:
    token = "tok-" + "9" * 24
    rows = show(
        "--role", "coordinator",
        REDIS_URL="redis://app:s3cret-pw@127.0.0.1:6379/0", SCRAPERV4_API_TOKEN=token,
    )  # fmt: skip
    assert rows["queue_url"]["value"] == "redis://app:***@127.0.0.1:6379/0"
    assert rows["queue_url"]["source"] == "env REDIS_URL"
    assert rows["api_token"]["value"] == "***"
    text = run_cli(
        "config", "show", "--role", "coordinator", SCRAPERV4_ROLE="worker",
        REDIS_URL="redis://:s3cret-pw@127.0.0.1/0", SCRAPERV4_API_TOKEN=token,
    )  # fmt: skip
    assert text.returncode == 0
    assert "s3cret-pw" not in text.stdout + text.stderr and token not in text.stdout
    assert text.stdout.startswith("# coordinator settings")
    proxy = show("--role", "worker", SCRAPERV4_PROXY="http://u:proxy-pw@127.0.0.1:3128")
    assert proxy["proxy"]["value"] == "http://u:***@127.0.0.1:3128"


def test_config_check_validates_a_file_for_every_role(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[queue]\nqueue_url = "redis://redis:6379/0"\n[worker]\nconcurrency = 64\n'
        '[coordinator]\napi_token = "0123456789abcdef"\n[run]\nprogress = "lines"\n'
    )
    ok = run_cli("config", "check", str(good))
    assert ok.returncode == 0 and f"{good}: ok" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("worker:\n  concurrency: 0\nrun:\n  progress: loud\nqueue:\n  lease: -1\n")
    failed = run_cli("config", "check", str(bad))
    assert failed.returncode == 1
    assert f"concurrency = 0 from config file {bad} [worker]" in failed.stderr
    assert "progress = 'loud'" in failed.stderr and "one of auto, bar, lines" in failed.stderr
    assert failed.stderr.count("lease = -1") == 1, "one problem is reported once"
    missing = run_cli("config", "check", str(tmp_path / "missing.toml"))
    assert missing.returncode == 2 and "missing.toml" in missing.stderr


def test_configuration_docs_are_generated_from_the_model_and_up_to_date() -> None:
    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == reference(), "run: scraperv4 config docs > docs/configuration.md"
    for model in ROLES.values():
        for spec in specs(model).values():
            assert f"`{spec.env}`" in written, spec.name
    cli = run_cli("config", "docs")
    assert cli.returncode == 0 and cli.stdout == written
