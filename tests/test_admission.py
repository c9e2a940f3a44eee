"""Admission of a submit (service.jobs.storage.admission): the client's limit, the queues' depth and
the write, in one script, against a real Redis."""

from __future__ import annotations

import pytest

from service.jobs.storage.admission import Gate, OverLimit, QueueFull, admit, parse_submit_limits
from service.jobs.storage.idempotency import IdempotencyClaim, IdempotencyConflict


def gate(limit: str = "3/minute", cap: int = 0) -> Gate:
    return Gate("alice", parse_submit_limits(limit), (("default", cap),))


def write_marker(name: str):
    def write(pipe):
        pipe.set(f"test:{name}", name)
        pipe.rpush("rq:queue:default", name)
        return name

    return write


def test_the_tightest_of_several_limits_is_reported_and_enforced(redis_conn):
    two_limits = gate("2/second;5/minute")
    first = admit(redis_conn, two_limits, hit_id="a", write=write_marker("a"))
    assert (first.created, first.new) == ("a", True)
    assert (first.allowance.limit, first.allowance.remaining) == (2, 1)  # 1 left of 2/second, 4 of 5/minute
    admit(redis_conn, two_limits, hit_id="b", write=write_marker("b"))
    with pytest.raises(OverLimit) as refused:
        admit(redis_conn, two_limits, hit_id="c", write=write_marker("c"))
    assert refused.value.allowance.limit == 2 and 0 < refused.value.retry_after_s <= 1
    assert redis_conn.get("test:c") is None and redis_conn.lrange("rq:queue:default", 0, -1) == [b"a", b"b"]


def test_a_refusal_writes_nothing_and_counts_nothing(redis_conn):
    full_at_two = gate("3/minute", cap=2)
    admit(redis_conn, full_at_two, hit_id="a", write=write_marker("a"))
    admit(redis_conn, full_at_two, hit_id="b", write=write_marker("b"))
    for _ in range(5):
        with pytest.raises(QueueFull, match="default queue is full"):
            admit(redis_conn, full_at_two, hit_id="c", write=write_marker("c"))
    assert redis_conn.get("test:c") is None
    redis_conn.lpop("rq:queue:default")  # a worker takes one
    third = admit(redis_conn, full_at_two, hit_id="c", write=write_marker("c"))
    assert third.allowance.remaining == 0  # the five refusals did not count: this is the third submit
    assert redis_conn.ttl("llmjobs:ratelimit:submits:alice:3/60") in range(55, 61)  # the window's key expires


def test_an_idempotent_replay_returns_the_first_and_counts_nothing(redis_conn):
    claim = IdempotencyClaim.for_request("alice", "key-1", {"prompt": "hi"}, ttl_s=60)
    found: dict[str, str] = {}

    def earlier(created_id: str) -> str | None:
        return found.get(created_id)

    first = admit(redis_conn, gate(), hit_id="a", write=write_marker("a"), idempotency=claim, earlier=earlier)
    found["a"] = "the first"
    again = admit(redis_conn, gate(), hit_id="b", write=write_marker("b"), idempotency=claim, earlier=earlier)
    assert (first.new, again.created, again.new) == (True, "the first", False)
    assert redis_conn.get("test:b") is None

    other_body = IdempotencyClaim.for_request("alice", "key-1", {"prompt": "bye"}, ttl_s=60)
    with pytest.raises(IdempotencyConflict):
        admit(redis_conn, gate(), hit_id="c", write=write_marker("c"), idempotency=other_body, earlier=earlier)

    found.clear()  # what the key named has expired: the same key creates anew, and counts
    fresh = admit(redis_conn, gate(), hit_id="d", write=write_marker("d"), idempotency=claim, earlier=earlier)
    assert (fresh.created, fresh.new, fresh.allowance.remaining) == ("d", True, 1)
    assert redis_conn.get("test:d") == b"d"
