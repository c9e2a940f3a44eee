"""Redis connections for the API and for workers."""

from __future__ import annotations

import logging
import time
from typing import cast

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)


def api_connection(url: str) -> Redis:
    """Short timeouts: a request must fail fast (503) when Redis is away, not hang."""
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=15)


def worker_connection(url: str) -> Redis:
    """For the worker's and the scheduler's own commands, none of which blocks (the
    worker's blocking dequeues use an asyncio client): a bounded read, so a Redis that
    stops answering is an error to wait out, not a hang of the worker's event loop."""
    return Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=15)


# redis-py types every reply for its sync and asyncio clients at once (`Awaitable[T] | T`);
# these are the sync client's replies to reads repeated across modules, at their real types.


def read_hash(connection: Redis, key: str) -> dict[bytes, bytes]:
    """HGETALL: the hash's fields and values ({} when it does not exist)."""
    return cast("dict[bytes, bytes]", connection.hgetall(key))


def read_value(connection: Redis, key: str) -> bytes | None:
    """GET: the string's bytes, or None when it does not exist."""
    return cast("bytes | None", connection.get(key))


def wait_until_reachable(connection: Redis, max_delay_s: float = 5.0) -> None:
    """Block until Redis answers, retrying with backoff: a process started alongside
    (or before) its Redis should wait for it, not exit."""
    delay = 0.2
    while True:
        try:
            connection.ping()
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("Redis not reachable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay_s)
