"""A redis-server of the test run's own (the `redis_server` fixture), or of one test's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from tests.support.network import free_port
from tests.support.waiting import wait_for


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
