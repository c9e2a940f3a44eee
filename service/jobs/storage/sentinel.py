"""Finding the Redis primary through Sentinel, and what this process knows of it.

redis-py's Sentinel asks its sentinels on each new connection; these ask every sentinel and
believe the newest answer, and the sync one remembers the primary it last named and how
many times it named another: what /readyz and /metrics report for the process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio.sentinel
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

log = logging.getLogger(__name__)


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
