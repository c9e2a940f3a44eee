"""Counting the Redis round trips a piece of code makes, for the tests that bound them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import redis


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
