"""Real parts for the tests: a redis-server of their own, the fake Anthropic server,
and helpers to run the API (`python wsgi.py`, as shipped) and worker.py as real processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(PYTHON).parent

T = TypeVar("T")
ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef"
API_KEYS = f"alice={ALICE_KEY},bob={BOB_KEY}"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll until `condition()` is truthy and return its value; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def all_at_once(threads: int, call: Callable[[], T]) -> list[T]:
    """`call()` in `threads` threads released together; their results. (A Flask test client
    is not thread-safe: let `call` make its own.)"""
    start = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def run(slot: int) -> None:
        start.wait()
        results[slot] = call()

    workers = [threading.Thread(target=run, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return results


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant of it, read from /proc (`pid` first)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and every descendant, as a crashed machine would. The tree is read
    before any kill: RQ puts each job's work horse in its own process group, so killing
    the worker's group alone leaves the horses running their calls."""
    tree = process_tree(pid)
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    return tree


@contextlib.contextmanager
def counting_redis_calls() -> Iterator[dict]:
    """Counts this process's Redis round trips while the body runs: pipeline executes, and
    the names of commands sent on their own."""
    calls: dict = {"pipeline": 0, "command": []}
    pipeline_execute, execute_command = redis.client.Pipeline.execute, redis.Redis.execute_command

    def counting_execute(self, *args, **kwargs):
        calls["pipeline"] += 1
        return pipeline_execute(self, *args, **kwargs)

    def counting_command(self, *args, **kwargs):
        calls["command"].append(args[0])
        return execute_command(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.client.Pipeline, "execute", counting_execute)
        patch.setattr(redis.Redis, "execute_command", counting_command)
        yield calls


class RedisServer:
    """A redis-server with AOF on, in its own directory, that a test may stop and restart."""

    def __init__(self, directory: Path, *extra_args: str):
        self.directory = directory
        self.port = free_port()
        self.extra_args = extra_args  # e.g. `--replicaof 127.0.0.1 <port>`
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (make test installs it)"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), what="redis-server to answer")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def crash(self) -> None:
        """SIGKILL: no shutdown save, so only what AOF had fsynced survives."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


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


ACCESS_LOG = '"logger": "granian.access"'


class Processes:
    """Starts real processes with their output in files, and stops them all at teardown."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.log_dir / f"{name}-{len(self.started)}.log"
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append((name, process, log))
        return process

    def log_of(self, process: subprocess.Popen) -> str:
        return next(log.read_text(errors="replace") for _, p, log in self.started if p is process)

    def stop_all(self) -> None:
        for _, process, _ in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process, _ in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def tails(self, lines: int = 30) -> str:
        """Each process's last lines, without the access log: a test that polls /metrics
        would fill them with its requests."""
        parts = []
        for name, process, log in self.started:
            kept = [line for line in log.read_text(errors="replace").splitlines() if ACCESS_LOG not in line]
            parts.append(f"--- {name} (pid {process.pid}, rc {process.poll()})\n" + "\n".join(kept[-lines:]))
        return "\n".join(parts)


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


# The `stack` marker (pyproject.toml): every test that starts processes (redis-server, the fake
# Anthropic server, gunicorn, workers, the scheduler) through these fixtures, directly or through
# another (`client`, `start_api`, ...), so that `pytest -m "not stack"` is a quick loop. A test
# that starts a process by hand marks itself with `@pytest.mark.stack` (`fake_process` is
# test_fake_anthropic.py's own fake server process).
STACK_FIXTURES = frozenset({"redis_server", "fake_anthropic", "processes", "fake_process"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def fake_anthropic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The project's fake Anthropic server as a real process; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("fake") / "fake.log"
    process = subprocess.Popen(
        [PYTHON, "-m", "fake_anthropic", "--port", str(port), "--chunk-delay-ms", "5"],
        cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{base_url}/healthz"), what="the fake Anthropic server")
    yield base_url
    process.terminate()
    process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:  # refused, or too busy to answer yet
        return False


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


def launch_api(processes: Processes, env: dict[str, str], port: int | None = None) -> str:
    """Start the API as shipped, `python wsgi.py` (on a free port, or `port`); returns its base URL once it answers."""
    port = port or free_port()
    process = processes.start("api", [PYTHON, "wsgi.py"], {**env, "BIND": f"127.0.0.1:{port}"})
    base_url = f"http://127.0.0.1:{port}"
    wait_for(  # importing the app takes seconds on a loaded machine (two processes boot at once)
        lambda: process.poll() is not None or _answers(f"{base_url}/openapi.json"),
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
    """Start `python scheduler.py` (polling every second); returns once it has registered
    itself, which it does after registering its periodic jobs."""

    def start(**env_overrides: str) -> subprocess.Popen:
        env = {**service_env, **env_overrides}
        earlier = set(redis_conn.keys("rq:scheduler_instance:*"))  # a stopped one's may linger
        process = processes.start("scheduler", [PYTHON, "scheduler.py", "--interval", "1"], env)
        wait_for(
            lambda: process.poll() is not None or set(redis_conn.keys("rq:scheduler_instance:*")) - earlier,
            what="the scheduler to register",
        )
        assert process.poll() is None, processes.log_of(process)
        return process

    return start


# --- a webhook receiver -----------------------------------------------------------------


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Answers each POST with the next scripted (status, headers, delay); 200 when the script runs out."""

    url: str = ""
    script: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    def serve(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append(Delivery(dict(self.headers.items()), body, time.time()))
                status, headers, delay = receiver.script.pop(0) if receiver.script else (200, {}, 0.0)
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_port}/hooks"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def receiver():
    receiver = Receiver()
    server = receiver.serve()
    yield receiver
    server.shutdown()
    server.server_close()


# --- reading /metrics ---------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str) -> Samples:
    """Prometheus text as {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; a series never counted is absent, which reads as 0."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(api: str) -> Samples:
    response = requests.get(f"{api}/metrics", timeout=10)  # no key
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples_of(response.text)
