"""`make run` (scripts/run-stack.sh) for real, in a copy of the project: its secrets are
readable by their owner only, it prints none of them, and its Redis wants a password; the
`llmjobs` command works with the export line it prints; a second `make run` says it is
running already; Ctrl-C stops the fake Anthropic server only after the workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import redis
import requests

from tests.support.jobs import post_job
from tests.support.network import free_port
from tests.support.paths import ROOT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.stack  # `make run` itself: the whole stack

SECRETS = ("dev-api-key", "webhook-secret", "dashboard-password", "redis-password")


def _ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", ".run", "__pycache__", "tests", "bench"))
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


def test_make_run_keeps_its_secrets_to_itself(project_copy: Path):
    ports = {"API_PORT": free_port(), "REDIS_PORT": free_port(), "FAKE_ANTHROPIC_PORT": free_port()}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "ANTHROPIC_", "API_", "WEBHOOK_", "DASHBOARD_", "RQ_"))}  # fmt: skip
    env.update({name: str(port) for name, port in ports.items()})
    env["WORKER_SHUTDOWN_GRACE_S"] = "2"  # within honcho's 5 s before it SIGKILLs
    log = project_copy / "run.log"
    stack = subprocess.Popen(
        ["scripts/run-stack.sh"], cwd=project_copy, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    run = project_copy / ".run"
    try:
        wait_for(lambda: stack.poll() is not None or _ready(f"http://127.0.0.1:{ports['API_PORT']}/readyz"),
                 timeout=90, interval=0.5, what="make run's stack to be ready")  # fmt: skip
        assert stack.poll() is None, log.read_text()

        assert stat.S_IMODE(run.stat().st_mode) == 0o700
        secrets = {}
        for name in SECRETS:
            assert stat.S_IMODE((run / name).stat().st_mode) == 0o600, name
            secrets[name] = (run / name).read_text().strip()
            assert len(secrets[name]) >= 16, name
        printed = log.read_text()
        assert "redis-password" in printed and "Dashboard" in printed
        for name, value in secrets.items():
            assert value not in printed, f"{name} was printed"

        # Its Redis wants the password, and the whole stack (readiness above) uses it.
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=ports["REDIS_PORT"]).ping()
        assert redis.Redis(port=ports["REDIS_PORT"], password=secrets["redis-password"]).ping()

        # The export line it printed is all the llmjobs command needs (a shell evaluates it).
        (export,) = [line.strip() for line in printed.splitlines() if line.strip().startswith("export ")]
        api = f"http://127.0.0.1:{ports['API_PORT']}"
        assert f"LLMJOBS_URL={api}" in export
        client_env = {k: v for k, v in env.items() if not k.startswith("LLMJOBS_")}
        submitted = subprocess.run(
            ["bash", "-c", f'{export} && llmjobs submit "Hi [[fake: tokens=5]]" --wait --json'],
            cwd=project_copy, env=client_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        assert json.loads(submitted.stdout)["status"] == "succeeded"

        # A second `make run` here says so at once, with the URL, and starts nothing.
        again = subprocess.run(["scripts/run-stack.sh"], cwd=project_copy, env=env, capture_output=True, text=True,
                               timeout=30)  # fmt: skip
        assert again.returncode == 1 and "already running" in again.stderr and api in again.stderr, again
        assert again.stdout == "" and _ready(f"{api}/readyz")

        # A job streaming from the fake while Ctrl-C comes: the worker winds down first.
        headers = {"Authorization": f"Bearer {secrets['dev-api-key']}"}
        job = post_job(api, {"prompt": "long [[fake: tokens=400 chunk_delay_ms=50]]"}, headers).json()
        wait_for(lambda: requests.get(f"{api}/v1/jobs/{job['id']}", headers=headers, timeout=10).json()["progress"]
                 ["output_tokens"] > 2, timeout=30, what="the job to stream")  # fmt: skip
    finally:
        os.killpg(stack.pid, signal.SIGINT)  # Ctrl-C
        try:
            stack.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
    # Redis (in a session of its own) was shut down by its wrapper, with the password.
    wait_for(lambda: not _redis_answers(ports["REDIS_PORT"]), timeout=15, what="make run's Redis to stop")
    # So was the fake, after the worker: the job's stream was never cut under it.
    wait_for(lambda: not _ready(f"http://127.0.0.1:{ports['FAKE_ANTHROPIC_PORT']}/healthz"), what="the fake to stop")
    # (Only the llmjobs job ended an attempt: the long one was put back, whole, at the end of the grace.)
    printed = log.read_text()
    assert printed.count("attempt ended") == 1 and "incomplete chunked read" not in printed, printed[-3000:]


def _redis_answers(port: int) -> bool:
    try:
        redis.Redis(port=port, socket_connect_timeout=1).ping()
    except redis.AuthenticationError:
        return True
    except redis.ConnectionError:
        return False
    return True
