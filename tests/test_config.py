"""Settings: `load_settings` validates the environment and names every bad variable,
and each process (API, worker, scheduler) stops on a bad one with one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from service.config import JobLimits, Settings, SettingsError, load_settings
from service.llm.pricing import ModelPrice
from tests.support.network import free_port
from tests.support.paths import ROOT

SETTINGS_VARS = (
    "REDIS_URL", "API_KEYS", "LLM_DEFAULT_MODEL", "RESULT_TTL_S", "WORKER_CONCURRENCY", "PROGRESS_INTERVAL_S",
    "LLM_PRICES", "MAX_BODY_BYTES", "MAX_MESSAGES", "MAX_OUTPUT_TOKENS", "MAX_METADATA_KEYS", "JOB_TIMEOUT_S",
    "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "DASHBOARD_USERNAME", "DASHBOARD_PASSWORD", "UPLOAD_RATE_LIMIT",
    "MAX_DOCUMENT_CHARACTERS", "REDIS_SENTINELS", "REDIS_MIN_REPLICAS_ACK", "REDIS_ACK_TIMEOUT_MS",
    "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
)  # fmt: skip
KEY_A = "a-key-0123456789abcdef"
KEY_B = "b-key-0123456789abcdef"
SECRET = "s3cret-0123456789abcd"  # 20 characters, must never be printed


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from no settings in the environment."""
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)


def settings_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **kwargs: bool) -> str:
    """Set `env`, call load_settings, and return the SettingsError message (failing if none)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(**kwargs)
    return str(caught.value)


# --- load_settings: errors -------------------------------------------------------------

BAD_SETTINGS = [
    pytest.param({}, "API_KEYS", id="API_KEYS-missing"),
    pytest.param({"API_KEYS": "alice"}, "API_KEYS", id="API_KEYS-malformed"),
    pytest.param({"API_KEYS": "alice=short-key"}, "API_KEYS", id="API_KEYS-short-key"),
    pytest.param({"API_KEYS": f"alice={KEY_A},bob={KEY_A}"}, "API_KEYS", id="API_KEYS-same-key-twice"),
    pytest.param({"API_KEYS": f"alice={KEY_A},=x{KEY_B}"}, "API_KEYS", id="API_KEYS-no-name"),
    pytest.param({"JOB_TIMEOUT_S": "abc"}, "JOB_TIMEOUT_S", id="JOB_TIMEOUT_S-not-int"),
    pytest.param({"JOB_TIMEOUT_S": "0"}, "JOB_TIMEOUT_S", id="JOB_TIMEOUT_S-zero"),
    pytest.param({"MAX_BODY_BYTES": "-1"}, "MAX_BODY_BYTES", id="MAX_BODY_BYTES-negative"),
    pytest.param({"REDIS_URL": "http://x"}, "REDIS_URL", id="REDIS_URL-http"),
    pytest.param({"LLM_PRICES": "not json"}, "LLM_PRICES", id="LLM_PRICES-not-json"),
    pytest.param({"LLM_PRICES": '{"my-model": [1]}'}, "LLM_PRICES", id="LLM_PRICES-one-price"),
    pytest.param({"LLM_PRICES": '{"my-model": [1, -2]}'}, "LLM_PRICES", id="LLM_PRICES-negative"),
    pytest.param({"LLM_PRICES": "[1, 2]"}, "LLM_PRICES", id="LLM_PRICES-not-an-object"),
    pytest.param({"LLM_PRICES": '{"my-model": [1, 2, 3]}'}, "LLM_PRICES", id="LLM_PRICES-three-prices"),
    pytest.param({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY", id="WORKER_CONCURRENCY-zero"),
    pytest.param(
        {"DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "x"}, "DASHBOARD_PASSWORD", id="DASHBOARD_PASSWORD-short"
    ),
    pytest.param({"UPLOAD_RATE_LIMIT": "lots"}, "UPLOAD_RATE_LIMIT", id="UPLOAD_RATE_LIMIT-not-a-limit"),
    pytest.param({"MAX_DOCUMENT_CHARACTERS": "0"}, "MAX_DOCUMENT_CHARACTERS", id="MAX_DOCUMENT_CHARACTERS-zero"),
    pytest.param({"REDIS_SENTINELS": "sentinel-1"}, "REDIS_SENTINELS", id="REDIS_SENTINELS-no-port"),
    pytest.param({"REDIS_SENTINELS": "a:26379,b:port"}, "REDIS_SENTINELS", id="REDIS_SENTINELS-bad-port"),
    pytest.param({"REDIS_MIN_REPLICAS_ACK": "-1"}, "REDIS_MIN_REPLICAS_ACK", id="REDIS_MIN_REPLICAS_ACK-negative"),
    pytest.param({"REDIS_ACK_TIMEOUT_MS": "0"}, "REDIS_ACK_TIMEOUT_MS", id="REDIS_ACK_TIMEOUT_MS-zero"),
    pytest.param({"OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG", id="OTEL_TRACES_SAMPLER_ARG-above-1"),
]


@pytest.mark.parametrize(("env", "variable"), BAD_SETTINGS)
def test_a_bad_setting_is_named(monkeypatch, env, variable):
    env = {"API_KEYS": f"a={KEY_A}", **env} if variable != "API_KEYS" else env

    message = settings_error(monkeypatch, env, require_api_keys=True)

    assert variable in message
    assert [name for name in SETTINGS_VARS if f"{name}:" in message] == [variable], message


def test_every_bad_setting_is_named_in_one_message(monkeypatch):
    bad = {"API_KEYS": "alice", "JOB_TIMEOUT_S": "abc", "REDIS_URL": "http://x", "WORKER_CONCURRENCY": "0"}

    message = settings_error(monkeypatch, {**bad, "MAX_MESSAGES": "10"}, require_api_keys=True)

    assert all(name in message for name in bad), message
    assert "MAX_MESSAGES" not in message
    assert "\n" not in message


def test_api_keys_are_only_required_when_asked(monkeypatch):
    assert load_settings().api_keys == {}
    assert "API_KEYS" in settings_error(monkeypatch, {}, require_api_keys=True)


def test_a_key_is_never_in_the_message(monkeypatch):
    message = settings_error(monkeypatch, {"API_KEYS": f"alice={SECRET},bob=short"}, require_api_keys=True)

    assert "API_KEYS" in message and "bob" in message
    assert SECRET not in message


def test_llm_key_is_required_when_asked(monkeypatch):
    assert load_settings(require_llm_key=False) == Settings()

    message = settings_error(monkeypatch, {}, require_llm_key=True)

    assert "ANTHROPIC_API_KEY" in message
    assert "ANTHROPIC_BASE_URL" not in message


def test_llm_base_url_must_be_a_url(monkeypatch):
    env = {"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "not a url"}

    message = settings_error(monkeypatch, env, require_llm_key=True)

    assert "ANTHROPIC_BASE_URL" in message
    assert "ANTHROPIC_API_KEY" not in message


# --- load_settings: valid values -------------------------------------------------------


def test_defaults_when_nothing_is_set():
    assert load_settings() == Settings()
    assert load_settings().limits == JobLimits(
        max_body_bytes=32_000_000, max_messages=200, max_output_tokens=64000, max_metadata_keys=16, max_timeout_s=600
    )


def test_api_keys_map_key_to_client(monkeypatch):
    monkeypatch.setenv("API_KEYS", f" a={KEY_A} , b={KEY_B} ")

    assert load_settings(require_api_keys=True).api_keys == {KEY_A: "a", KEY_B: "b"}


def test_prices_parse_to_model_prices(monkeypatch):
    monkeypatch.setenv("LLM_PRICES", '{"my-model": [1, 2], "cached": [1, 2, 1.25, 2, 0.1]}')

    prices = load_settings().price_overrides

    assert prices == {"my-model": ModelPrice(1.0, 2.0), "cached": ModelPrice(1.0, 2.0, 1.25, 2.0, 0.1)}
    assert all(isinstance(v, float) for v in (prices["my-model"].input, prices["my-model"].output))


def test_sentinels_are_read_as_addresses(monkeypatch):
    monkeypatch.setenv("REDIS_SENTINELS", "sentinel-1:26379, 10.0.0.2:26380,[::1]:26381")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "jobs")
    monkeypatch.setenv("REDIS_MIN_REPLICAS_ACK", "1")

    settings = load_settings()

    assert settings.redis_sentinels == (("sentinel-1", 26379), ("10.0.0.2", 26380), ("::1", 26381))
    assert (settings.redis_sentinel_master, settings.redis_min_replicas_ack, settings.redis_ack_timeout_ms) == (
        "jobs",
        1,
        500,
    )


def test_sentinels_need_a_redis_url_not_a_socket(monkeypatch):
    monkeypatch.setenv("REDIS_SENTINELS", "sentinel-1:26379")
    monkeypatch.setenv("REDIS_URL", "unix:///run/redis.sock")

    with pytest.raises(SettingsError, match="REDIS_URL"):
        load_settings()


def test_limits_and_other_values_are_read(monkeypatch):
    env = {
        "REDIS_URL": "redis://cache:6380/2",
        "LLM_DEFAULT_MODEL": "my-model",
        "RESULT_TTL_S": "60",
        "WORKER_CONCURRENCY": "4",
        "PROGRESS_INTERVAL_S": "0.5",
        "MAX_BODY_BYTES": "2048",
        "MAX_MESSAGES": "10",
        "MAX_OUTPUT_TOKENS": "100",
        "MAX_METADATA_KEYS": "0",
        "JOB_TIMEOUT_S": "30",
        "ANTHROPIC_API_KEY": "k",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8080",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    settings = load_settings(require_llm_key=True)

    assert settings.limits == JobLimits(
        max_body_bytes=2048, max_messages=10, max_output_tokens=100, max_metadata_keys=0, max_timeout_s=30
    )
    assert (settings.redis_url, settings.default_model) == ("redis://cache:6380/2", "my-model")
    assert (settings.result_ttl_s, settings.worker_concurrency, settings.progress_interval_s) == (60, 4, 0.5)


def test_the_root_ratio_is_read_only_without_a_sampler_of_the_operators(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    assert load_settings().traces_root_ratio == 0.25
    # Another sampler's argument is that sampler's (the SDK reads it): not ours to check.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_jaeger_remote")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "endpoint=http://localhost:14250")
    settings = load_settings()
    assert (settings.traces_sampler, settings.traces_root_ratio) == ("parentbased_jaeger_remote", 0.1)


# --- processes stop with one clear line ------------------------------------------------


def clean_environ() -> dict[str, str]:
    """This environment without any of the service's settings."""
    return {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS and not k.startswith(("ANTHROPIC_", "RQ_"))}


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run a process of the service from the repo root with only `env` as its settings."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean_environ(), **env}, capture_output=True, text=True, timeout=60
    )


def one_config_error_line(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    assert result.returncode == status, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("config error:"), result.stderr
    return lines[0]


@pytest.mark.stack
def test_worker_without_llm_key_stops_with_one_line():
    line = one_config_error_line(run(["worker.py"], REDIS_URL="redis://127.0.0.1:1/0"))

    assert "ANTHROPIC_API_KEY" in line


@pytest.mark.stack
def test_worker_refuses_an_unknown_queue():
    result = run(["worker.py", "bogus"], REDIS_URL="redis://127.0.0.1:1/0", ANTHROPIC_API_KEY="k")

    assert result.returncode == 2, result.stderr
    assert "bogus" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.stack
def test_api_without_keys_stops_with_one_line():
    line = one_config_error_line(run(["-c", "import wsgi"], REDIS_URL="redis://127.0.0.1:1/0"), status=4)

    assert "API_KEYS" in line


@pytest.mark.stack
def test_api_never_prints_a_key():
    line = one_config_error_line(run(["-c", "import wsgi"], API_KEYS=f"alice={SECRET},bob=short"), status=4)

    assert "API_KEYS" in line and "bob" in line
    assert SECRET not in line


@pytest.mark.stack
def test_scheduler_with_bad_timeout_stops_with_one_line():
    line = one_config_error_line(run(["scheduler.py"], REDIS_URL="redis://127.0.0.1:1/0", JOB_TIMEOUT_S="abc"))

    assert "JOB_TIMEOUT_S" in line


@pytest.mark.stack
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RATE_LIMIT", "bogus"),
        ("JOB_TIMEOUT_S", "-1"),
        ("API_KEYS", "alice"),
        ("WEB_CONCURRENCY", "0"),
        ("API_THREADS", "many"),
        ("BIND", "8000"),
        ("ACCESS_LOG", "yes"),
        ("ACCESS_LOG", "1.5"),
    ],
)
def test_the_api_with_a_bad_setting_stops_before_starting_a_server_process(variable, value):
    """Issue 9 item 23: `python wsgi.py` checks the settings before the server starts its
    processes, and exits naming the variable. (With respawn on, a process that failed at
    import would be started again, forever: this wait would then run out.)"""
    env = {**clean_environ(), "API_KEYS": f"alice={KEY_A}", "REDIS_URL": "redis://127.0.0.1:1/0",
           "BIND": f"127.0.0.1:{free_port()}", variable: value}  # fmt: skip
    api = subprocess.Popen(
        [sys.executable, "wsgi.py"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = api.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(api.pid, signal.SIGKILL)  # the server and the processes it keeps starting
        _, stderr = api.communicate()
        pytest.fail(f"the API was still running after 60 s:\n{stderr[-2000:]}")

    assert api.returncode == 2, stderr
    assert f"config error: {variable}" in stderr
    assert "Spawning worker" not in stderr
    assert "Traceback" not in stderr
