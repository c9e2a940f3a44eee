"""The service's own processes in a test, as shipped: the fake Anthropic server, the API
(`python wsgi.py`), `worker.py` and `scheduler.py`, with the environment each gets. Each
`launch_*` returns once the process is ready, and fails the test with its log if it died."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import redis

from tests.support.keys import API_KEYS
from tests.support.network import answers, free_port
from tests.support.paths import PYTHON, ROOT
from tests.support.processes import Processes
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for


def stack_env(redis_server: RedisServer, fake_anthropic: str) -> dict[str, str]:
    """The environment every process of the service gets in a test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "RQ_"))}
    env.update(
        REDIS_URL=redis_server.url,
        API_KEYS=API_KEYS,
        ANTHROPIC_API_KEY="test-key",
        ANTHROPIC_BASE_URL=fake_anthropic,
        PROGRESS_INTERVAL_S="0.05",
        WORKER_CONCURRENCY="1",
        WEB_CONCURRENCY="1",  # each API process imports the app: a test about several says so
        PYTHONUNBUFFERED="1",
    )
    return env


def launch_fake_anthropic(log: Path) -> tuple[subprocess.Popen, str]:
    """The project's fake Anthropic server as a real process, its output in `log`; the
    process and its base URL, once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "fake_anthropic", "--port", str(port), "--chunk-delay-ms", "5"],
        cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base_url}/healthz"), what="the fake Anthropic server")
    return process, base_url


def launch_api(processes: Processes, env: dict[str, str], port: int | None = None) -> str:
    """Start the API as shipped, `python wsgi.py` (on a free port, or `port`); returns its base URL once it answers."""
    port = port or free_port()
    process = processes.start("api", [PYTHON, "wsgi.py"], {**env, "BIND": f"127.0.0.1:{port}"})
    base_url = f"http://127.0.0.1:{port}"
    wait_for(  # importing the app takes seconds on a loaded machine (two processes boot at once)
        lambda: process.poll() is not None or answers(f"{base_url}/openapi.json"),
        timeout=30,
        what="the API to answer",
    )
    assert process.poll() is None, processes.log_of(process)
    return base_url


def launch_worker(processes: Processes, env: dict[str, str], connection: redis.Redis, *queues: str) -> subprocess.Popen:
    """Start `python worker.py QUEUE...`; returns once its worker processes have registered."""
    from rq import Worker

    before = len(Worker.all(connection=connection))
    process = processes.start("worker", [PYTHON, "worker.py", *queues], env)
    wanted = before + int(env.get("WORKER_PROCESSES", "1"))
    wait_for(  # importing the anthropic SDK alone takes seconds on a loaded machine
        lambda: process.poll() is not None or len(Worker.all(connection=connection)) >= wanted,
        timeout=30,
        what="the worker to register",
    )
    assert process.poll() is None, processes.log_of(process)
    return process


def launch_scheduler(processes: Processes, env: dict[str, str], connection: redis.Redis) -> subprocess.Popen:
    """Start `python scheduler.py` (polling every second); returns once it has registered
    itself, which it does after registering its periodic jobs."""
    earlier = set(connection.keys("rq:scheduler_instance:*"))  # a stopped one's may linger
    process = processes.start("scheduler", [PYTHON, "scheduler.py", "--interval", "1"], env)
    wait_for(
        lambda: process.poll() is not None or set(connection.keys("rq:scheduler_instance:*")) - earlier,
        what="the scheduler to register",
    )
    assert process.poll() is None, processes.log_of(process)
    return process
