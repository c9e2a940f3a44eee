"""Fixtures and pytest hooks, and nothing else: the real parts the tests run on (a redis-server
of their own, the fake Anthropic server, the API and worker as real processes) are built in
tests/support/, which is where test modules import helpers from."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.markers import mark_stack_tests
from tests.support.processes import Processes
from tests.support.redis_server import RedisServer
from tests.support.stack import launch_api, launch_fake_anthropic, launch_scheduler, launch_worker, stack_env
from tests.support.webhooks import Receiver


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_conn(redis_server: RedisServer) -> redis.Redis:
    """A clean database for each test."""
    connection = redis.Redis.from_url(redis_server.url)
    connection.flushall()
    return connection


@pytest.fixture
def processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(procs.tails())


MEMORY_DISK = Path("/dev/shm")
_MEMORY_BASETEMP = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Temporary directories in memory when the machine has a tmpfs: the tests' redis-servers
    keep their AOF there with `appendfsync always` (a crash test keeps only what was written),
    and an fsync on disk costs ~7 ms per write here (526 SETs/s against 7,500 in memory, by
    redis-benchmark), which every write of every test paid. Runs on the controller (xdist gives
    each worker a folder inside it); the folder is unique, so runs at once do not meet."""
    if config.option.basetemp is None and not hasattr(config, "workerinput") and os.access(MEMORY_DISK, os.W_OK):
        config.option.basetemp = tempfile.mkdtemp(prefix="llmjobs-tests-", dir=MEMORY_DISK)
        config.stash[_MEMORY_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    """Memory is not a disk: the folder goes when the run ends (a failed test's process logs
    were printed in its report already)."""
    made = config.stash.get(_MEMORY_BASETEMP, None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_stack_tests(items)  # the `stack` marker: tests/support/markers.py


@pytest.fixture(scope="session")
def fake_anthropic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The project's fake Anthropic server as a real process; yields its base URL."""
    process, base_url = launch_fake_anthropic(tmp_path_factory.mktemp("fake") / "fake.log")
    yield base_url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def service_env(redis_server: RedisServer, fake_anthropic: str, redis_conn: redis.Redis) -> dict[str, str]:
    """`stack_env`, on a Redis emptied for the test (`redis_conn`)."""
    return stack_env(redis_server, fake_anthropic)


@pytest.fixture
def app(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """The Flask app in-process (for request/response tests), on the tests' Redis."""
    from service.app import create_app

    for name in ("REDIS_URL", "API_KEYS", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.setenv(name, service_env[name])
    return create_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def start_api(processes: Processes, service_env: dict[str, str]) -> Callable[..., str]:
    """`launch_api` with the test's environment and overrides."""

    def start(port: int | None = None, **env_overrides: str) -> str:
        return launch_api(processes, {**service_env, **env_overrides}, port)

    return start


@pytest.fixture
def start_worker(processes: Processes, service_env: dict[str, str], redis_conn: redis.Redis):
    """`launch_worker` with the test's environment and overrides."""

    def start(*queues: str, **env_overrides: str) -> subprocess.Popen:
        return launch_worker(processes, {**service_env, **env_overrides}, redis_conn, *queues)

    return start


@pytest.fixture
def start_scheduler(processes: Processes, service_env: dict[str, str], redis_conn: redis.Redis):
    """`launch_scheduler` with the test's environment and overrides."""

    def start(**env_overrides: str) -> subprocess.Popen:
        return launch_scheduler(processes, {**service_env, **env_overrides}, redis_conn)

    return start


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free port, answering as its `script` says."""
    receiver = Receiver()
    server = receiver.serve()
    yield receiver
    server.shutdown()
    server.server_close()
