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
from typing import Any, cast

import redis.asyncio
import redis.asyncio.sentinel
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from service.config import Settings
from service.jobs.storage.keys import REPLICATION_MARK_KEY, REPLICATION_MARK_TTL_S

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
    """The asyncio client for the worker's blocking reads (BLMPOP, pubsub), same rules."""
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


class FollowingSentinel(Sentinel):
    """redis-py's Sentinel, asking every sentinel and believing the newest answer, and
    remembering the primary it last named and how many times it named another (what /readyz
    and /metrics report for this process).

    redis-py believes the first sentinel that names a live primary. A sentinel that has not
    yet heard of a failover still names the old primary, and when that one is restarted it
    answers as a primary until Sentinel demotes it: writes sent there are lost when it is.
    The primary named with the highest configuration epoch is the one the last failover chose.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.primary: tuple[str, int] | None = None
        self.failovers_seen = 0

    def discover_master(self, service_name: str) -> tuple[str, int]:
        answers: list[dict | Exception] = []
        for sentinel in self.sentinels:
            try:
                answers.append(sentinel.sentinel_masters())
            except (RedisConnectionError, RedisTimeoutError) as exc:
                answers.append(exc)
        address = _newest_primary(self, service_name, answers)
        if self.primary is not None and address != self.primary:
            self.failovers_seen += 1
            log.warning("Redis primary %s moved to %s: following it", _address(self.primary), _address(address))
        self.primary = address
        return address


class FollowingAsyncSentinel(redis.asyncio.sentinel.Sentinel):
    """The asyncio twin of FollowingSentinel's choice (its bookkeeping is the sync one's)."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        answers: list[dict | Exception] = []
        for sentinel in self.sentinels:
            try:
                answers.append(await sentinel.sentinel_masters())
            except (RedisConnectionError, RedisTimeoutError) as exc:
                answers.append(exc)
        return _newest_primary(self, service_name, answers)


def _newest_primary(
    sentinel: Sentinel | redis.asyncio.sentinel.Sentinel, service_name: str, answers: list[dict | Exception]
) -> tuple[str, int]:
    """The live primary named with the highest configuration epoch among the sentinels' answers."""
    newest: tuple[int, tuple[str, int]] | None = None
    for answer in answers:
        state = None if isinstance(answer, Exception) else answer.get(service_name)
        if state and sentinel.check_master_state(state, service_name):
            epoch = int(state.get("config-epoch", 0))
            if newest is None or epoch > newest[0]:
                newest = (epoch, (state["ip"], int(state["port"])))
    if newest is None:
        errors = "; ".join(repr(answer) for answer in answers if isinstance(answer, Exception))
        raise MasterNotFoundError(f"no sentinel names a primary for {service_name!r} {errors}".strip())
    return newest[1]


@dataclass(frozen=True)
class Primary:
    """The Redis this process writes to, and how many failovers it has followed."""

    address: str  # host:port ("" while Sentinel has not named one yet)
    via_sentinel: bool
    failovers_seen: int


def primary_of(connection: Redis) -> Primary:
    pool = connection.connection_pool
    if isinstance(pool, SentinelConnectionPool) and isinstance(pool.sentinel_manager, FollowingSentinel):
        sentinel = pool.sentinel_manager
        address = _address(sentinel.primary) if sentinel.primary else ""
        return Primary(address, True, sentinel.failovers_seen)
    kwargs = pool.connection_kwargs
    address = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return Primary(address, False, 0)


def _address(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


class NotReplicated(RedisError):
    """Fewer replicas than REDIS_MIN_REPLICAS_ACK confirmed a write in time: it may be lost
    in a failover, so it must not be acknowledged."""

    def __init__(self, wanted: int, confirmed: int, timeout_ms: int) -> None:
        super().__init__(
            f"the job store copied the write to {confirmed} of the {wanted} replicas it needs "
            f"(REDIS_MIN_REPLICAS_ACK) within {timeout_ms} ms; try again shortly"
        )


def confirm_replicated(connection: Redis, replicas: int, timeout_ms: int) -> None:
    """Return once `replicas` replicas have every write this thread made before the call;
    raise NotReplicated after `timeout_ms` otherwise (0 replicas: at once, nothing sent).

    WAIT counts the writes of the connection it runs on, and a write that answers a client
    (an admission script, a retry's transaction) ran on whichever pooled connection was
    free. So a mark is written on WAIT's own connection, in one round trip with it:
    replication is one ordered stream, and a replica that has the mark has every write the
    primary applied before it, which includes the caller's (each had answered already)."""
    if replicas <= 0:
        return
    with connection.pipeline(transaction=False) as pipe:
        pipe.set(REPLICATION_MARK_KEY, 1, ex=REPLICATION_MARK_TTL_S)
        pipe.wait(replicas, timeout_ms)
        _, confirmed = pipe.execute()
    if confirmed < replicas:
        raise NotReplicated(replicas, confirmed, timeout_ms)


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
