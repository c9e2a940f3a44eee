"""The provider gate against a real Redis: processes asking at the same moment never hold
more permits than LLM_MAX_IN_FLIGHT; a low budget holds every process, or only the one that
read it when the hold is shorter than a pause."""

from __future__ import annotations

import itertools
import time

import redis

from service.jobs.running.provider_gate import MIN_WAIT_S, SLOW_START_S, ProviderGate, RateLimitHeaders
from tests.support.concurrency import all_at_once

CAP = 2
NO_HEADERS = RateLimitHeaders({}, {})


def test_processes_asking_at_once_never_take_more_permits_than_the_cap(redis_server, redis_conn: redis.Redis) -> None:
    names = itertools.count()

    def ask() -> int:
        # One gate per "process", each with its own connection, as worker processes have.
        gate = ProviderGate(redis.Redis.from_url(redis_server.url), "key", process=f"p{next(names)}", max_in_flight=CAP)
        gate.report_answer(NO_HEADERS)  # past its slow start
        return gate.admit(CAP).granted

    for _ in range(20):  # a race shows in some rounds, not every one
        redis_conn.flushall()
        granted = all_at_once(8, ask)
        assert sum(granted) == CAP, granted
        assert redis_conn.zcard(next(k for k in redis_conn.keys("*permits*"))) == CAP


def test_released_permits_go_back_to_the_others(redis_conn: redis.Redis) -> None:
    first = ProviderGate(redis_conn, "key", process="first", max_in_flight=CAP)
    second = ProviderGate(redis_conn, "key", process="second", max_in_flight=CAP)
    for gate in (first, second):
        gate.report_answer(NO_HEADERS)  # past its slow start
    assert first.admit(3).granted == CAP
    assert second.admit(1).granted == 0
    first.release(1)
    assert second.admit(3).granted == 1
    assert first.admit(1).granted == 0


def low_budget(remaining: int, limit: int, reset_in_s: float) -> RateLimitHeaders:
    return RateLimitHeaders({"tokens": remaining}, {"tokens": time.time() + reset_in_s}, {"tokens": limit})


def test_a_long_low_budget_hold_closes_the_gate_for_every_process(redis_conn: redis.Redis) -> None:
    reader = ProviderGate(redis_conn, "key", process="reader", token_margin=1000)
    other = ProviderGate(redis_conn, "key", process="other", token_margin=1000)
    reader.report_answer(low_budget(0, 10_000, reset_in_s=60))  # 1000 tokens back in 6 s
    for gate in (reader, other):
        refused = gate.admit(1)
        assert refused.granted == 0 and 5 < refused.wait_s <= 6


def test_a_hold_shorter_than_a_pause_is_kept_by_the_process_that_read_it(redis_conn: redis.Redis) -> None:
    reader = ProviderGate(redis_conn, "key", process="reader", token_margin=1000)
    other = ProviderGate(redis_conn, "key", process="other", token_margin=1000)
    reader.report_answer(low_budget(49, 80_000, reset_in_s=1))  # 951 tokens back in 12 ms
    refused = reader.admit(1)
    assert refused.granted == 0 and refused.wait_s < MIN_WAIT_S
    assert other.admit(1).granted == 1  # no round trip told it
    time.sleep(MIN_WAIT_S)
    assert reader.admit(1).granted == 1


def test_a_process_calls_once_until_the_provider_has_answered_it(redis_conn: redis.Redis) -> None:
    gate = ProviderGate(redis_conn, "key", process="fresh")
    assert gate.admit(50).granted == 1  # the slow start: one call first
    assert gate.admit(50).granted == 0  # while it has no answer
    gate.release()  # it ended without one (canceled, unreachable): another single call may go
    assert gate.admit(50).granted == 1
    time.sleep(SLOW_START_S)  # no answer yet, but a slow start holds the others no longer
    assert gate.admit(50).granted == 50
    gate.report_answer(NO_HEADERS)
    assert gate.admit(50).granted == 50
    gate.release()
    assert gate.admit(50).granted == 50  # one answer ends the slow start for good


def test_a_429_ends_the_slow_start_and_closes_the_gate(redis_conn: redis.Redis) -> None:
    gate = ProviderGate(redis_conn, "key", process="fresh")
    assert gate.admit(50).granted == 1
    gate.report_rate_limited(0.2)
    assert gate.admit(50).granted == 0
    time.sleep(0.3)
    assert gate.admit(50).granted == 1  # the reopening's probe
    gate.report_answer(NO_HEADERS)
    assert gate.admit(50).granted == 50
