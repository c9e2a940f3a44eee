"""Redis connections for the API, workers and the scheduler.

One Redis named by REDIS_URL, or, with REDIS_SENTINELS, the primary that Sentinel names:
each new connection asks Sentinel where the primary is, so a process follows it when
Sentinel promotes a replica (redis-py's `Sentinel.master_for`); REDIS_URL then gives only
the password, the database and TLS.

A command holds its caller for a bounded time, also while the primary is lost: short
timeouts and one quick retry (a retry that reconnects finds a primary just promoted), and
an API request answers 503 rather than outlive its client's timeout.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from service.config import Settings
from service.jobs.storage import replies
from service.jobs.storage.sentinel import FollowingAsyncSentinel, FollowingSentinel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """How long one command may hold its caller: connect, read, then `retries` more tries
    after a short pause. redis-py applies the retries twice over, to a connection's
    handshake and to the command: a Redis that accepts and never answers holds a command
    (retries + 1)**2 * read_s, one that refuses (or a dead primary's stale connection) only
    the pause before a retry that reconnects, through Sentinel, to the promoted replica."""

    connect_s: float
    read_s: float
    retries: int = 1


# A request answers 503 when Redis is away: at most ~8 s, under any sane client timeout
# (tests/test_failover.py). The longest read the API waits on is a 1 s XREAD BLOCK (SSE).
API_BUDGET = Budget(connect_s=1.0, read_s=2.0)
# The worker's and the scheduler's own commands, none of which blocks: a Redis that stops
# answering is an error to wait out (~20 s at most), not a hang of the worker's event loop.
WORKER_BUDGET = Budget(connect_s=2.0, read_s=5.0)
# Sentinel answers from memory: a sentinel that does not answer at once is skipped.
SENTINEL_QUERY_S = 0.5
RETRY_PAUSE_S = 0.2


def api_connection(settings: Settings) -> Redis:
    return connect(settings, API_BUDGET)


def worker_connection(settings: Settings) -> Redis:
    return connect(settings, WORKER_BUDGET)


def connect(settings: Settings, budget: Budget) -> Redis:
    """A client of the one Redis (REDIS_URL) or of the primary Sentinel names."""
    options = _options(budget, health_check_interval=15)
    if not settings.redis_sentinels:
        return Redis.from_url(settings.redis_url, **options)
    sentinel = FollowingSentinel(list(settings.redis_sentinels), sentinel_kwargs=_sentinel_options())
    return sentinel.master_for(settings.redis_sentinel_master, **_credentials(settings.redis_url), **options)


def async_connection(settings: Settings, budget: Budget) -> redis.asyncio.Redis:
    """The asyncio client for the worker's reads that must not block its loop (the queues'
    watches, the takes, the pubsub), same rules."""
    options = _options(budget)
    if not settings.redis_sentinels:
        return redis.asyncio.Redis.from_url(settings.redis_url, **options)
    sentinel = FollowingAsyncSentinel(list(settings.redis_sentinels), sentinel_kwargs=_sentinel_options())
    return sentinel.master_for(settings.redis_sentinel_master, **_credentials(settings.redis_url), **options)


def _options(budget: Budget, **extra: Any) -> dict[str, Any]:
    return {
        "socket_connect_timeout": budget.connect_s,
        "socket_timeout": budget.read_s,
        "socket_keepalive": True,
        # redis-py's default (3 retries, jittered back-off up to 10 s each) could hold a
        # request for half a minute. A demoted primary's READONLY is retried too: the retry
        # reconnects, to the new primary.
        "retry": Retry(ExponentialBackoff(cap=RETRY_PAUSE_S, base=RETRY_PAUSE_S / 2), budget.retries),
        "retry_on_error": [ReadOnlyError],
        **extra,
    }


def _sentinel_options() -> dict[str, Any]:
    return {
        "socket_connect_timeout": SENTINEL_QUERY_S,
        "socket_timeout": SENTINEL_QUERY_S,
        "retry": Retry(ExponentialBackoff(), 0),  # the next sentinel is the retry
    }


def _credentials(url: str) -> dict[str, Any]:
    """What REDIS_URL still says under Sentinel: password (and user), database, TLS."""
    parsed = parse_url(url)
    credentials = {name: parsed[name] for name in ("username", "password", "db") if name in parsed}
    if parsed.get("connection_class") is SSLConnection:
        credentials["ssl"] = True
    return credentials


# Reads repeated across modules, their replies typed by `replies`.


def read_hash(connection: Redis, key: str) -> dict[bytes, bytes]:
    """HGETALL: the hash's fields and values ({} when it does not exist)."""
    return replies.as_hash(connection.hgetall(key))


def read_value(connection: Redis, key: str) -> bytes | None:
    """GET: the string's bytes, or None when it does not exist."""
    return replies.as_bytes(connection.get(key))


def wait_until_reachable(connection: Redis, max_delay_s: float = 5.0) -> None:
    """Block until Redis answers, retrying with backoff: a process started alongside
    (or before) its Redis, or while Sentinel names no primary, waits for it, not exits."""
    delay = 0.2
    while True:
        try:
            connection.ping()
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("Redis not reachable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay_s)
