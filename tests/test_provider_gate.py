"""The provider gate's cap on calls in flight, against a real Redis: processes asking at the
same moment never hold more permits than LLM_MAX_IN_FLIGHT."""

from __future__ import annotations

import itertools

import redis

from service.jobs.running.provider_gate import ProviderGate
from tests.conftest import all_at_once

CAP = 2


def test_processes_asking_at_once_never_take_more_permits_than_the_cap(redis_server, redis_conn: redis.Redis) -> None:
    names = itertools.count()

    def ask() -> int:
        # One gate per "process", each with its own connection, as worker processes have.
        gate = ProviderGate(redis.Redis.from_url(redis_server.url), "key", process=f"p{next(names)}", max_in_flight=CAP)
        return gate.admit(CAP).granted

    for _ in range(20):  # a race shows in some rounds, not every one
        redis_conn.flushall()
        granted = all_at_once(8, ask)
        assert sum(granted) == CAP, granted
        assert redis_conn.zcard(next(k for k in redis_conn.keys("*permits*"))) == CAP


def test_released_permits_go_back_to_the_others(redis_conn: redis.Redis) -> None:
    first = ProviderGate(redis_conn, "key", process="first", max_in_flight=CAP)
    second = ProviderGate(redis_conn, "key", process="second", max_in_flight=CAP)
    assert first.admit(3).granted == CAP
    assert second.admit(1).granted == 0
    first.release(1)
    assert second.admit(3).granted == 1
    assert first.admit(1).granted == 0
