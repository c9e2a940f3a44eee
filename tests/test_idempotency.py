"""`Idempotency-Key` on POST /v1/jobs: the same key and body from the same client give the
first job back (200), another body is a 409, and keys are per client and expire.

In-process on a real Redis; no worker runs, so every job stays queued.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import redis
import rq
from rq.serializers import JSONSerializer

from service.app import create_app
from tests.support.concurrency import all_at_once
from tests.support.error_shape import assert_error_shape
from tests.support.jobs import post_job_in_app
from tests.support.keys import ALICE, BOB

KEY = "order-1234-attempt"
DEFAULT_TTL_S = 86400


def post_with_key(client, body: dict[str, Any], key: str | None = KEY, headers: dict[str, str] = ALICE):
    extra = {} if key is None else {"Idempotency-Key": key}
    return post_job_in_app(client, body, {**headers, **extra})


def accepted(response, code: int = 202) -> dict[str, Any]:
    assert response.status_code == code, response.get_data(as_text=True)
    return response.get_json()


def rq_job_ids(redis_conn: redis.Redis) -> set[str]:
    """Ids of the stored RQ jobs (the job hashes, not their side keys)."""
    return {key.decode().removeprefix("rq:job:") for key in redis_conn.keys("rq:job:*") if key.count(b":") == 2}


def queued(redis_conn: redis.Redis, name: str = "default") -> list[str]:
    return rq.Queue(name, connection=redis_conn, serializer=JSONSerializer).job_ids


def idempotency_key(client_name: str, key: str) -> str:
    return f"llmjobs:idempotency:{client_name}:{hashlib.sha256(key.encode()).hexdigest()}"


# --- replay and conflict ---------------------------------------------------------------


def test_same_key_and_body_returns_the_first_job(client, redis_conn):
    first = post_with_key(client, {"prompt": "hi"})
    second = post_with_key(client, {"prompt": "hi"})

    job = accepted(first, 202)
    replayed = accepted(second, 200)
    assert replayed["id"] == job["id"]
    assert second.headers["Location"] == first.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert replayed == job
    assert rq_job_ids(redis_conn) == {job["id"]}
    assert queued(redis_conn) == [job["id"]]


def test_same_key_with_another_body_is_409_and_creates_nothing(client, redis_conn):
    job = accepted(post_with_key(client, {"prompt": "hi"}))

    response = post_with_key(client, {"prompt": "something else"})

    body = assert_error_shape(response, 409)
    assert "Idempotency-Key" in body["message"]
    assert rq_job_ids(redis_conn) == {job["id"]}
    assert queued(redis_conn) == [job["id"]]


def test_keys_are_per_client(client, redis_conn):
    alices = accepted(post_with_key(client, {"prompt": "hi"}))

    bobs = accepted(post_with_key(client, {"prompt": "hi"}, headers=BOB), 202)

    assert bobs["id"] != alices["id"]
    assert rq_job_ids(redis_conn) == {alices["id"], bobs["id"]}
    assert client.get(f"/v1/jobs/{bobs['id']}", headers=BOB).status_code == 200
    assert client.get(f"/v1/jobs/{bobs['id']}", headers=ALICE).status_code == 404
    # and each client's replay finds its own job
    assert accepted(post_with_key(client, {"prompt": "hi"}, headers=BOB), 200)["id"] == bobs["id"]
    assert accepted(post_with_key(client, {"prompt": "hi"}), 200)["id"] == alices["id"]


# The fingerprint is taken of the body after validation (service/api/jobs.py hands the loaded
# body to IdempotencyClaim.for_request): defaults are filled in (priority, max_tokens, metadata)
# and `prompt` becomes `messages`. So bodies that ask for the same job are the same request.
@pytest.mark.parametrize(
    "same_request",
    [
        {"prompt": "hi", "priority": "default"},
        {"max_tokens": 1024, "prompt": "hi", "metadata": {}},
        {"messages": [{"role": "user", "content": "hi"}]},
    ],
)
def test_bodies_equal_after_validation_defaults_are_the_same_request(client, redis_conn, same_request):
    job = accepted(post_with_key(client, {"prompt": "hi"}))

    assert accepted(post_with_key(client, same_request), 200)["id"] == job["id"]
    assert rq_job_ids(redis_conn) == {job["id"]}


@pytest.mark.parametrize(
    "other_request",
    [{"prompt": "hi", "priority": "high"}, {"prompt": "hi", "max_tokens": 1023}, {"prompt": "hi", "system": "s"}],
)
def test_a_body_that_differs_after_validation_is_a_conflict(client, redis_conn, other_request):
    job = accepted(post_with_key(client, {"prompt": "hi"}))

    assert_error_shape(post_with_key(client, other_request), 409)
    assert rq_job_ids(redis_conn) == {job["id"]}


def test_without_the_header_identical_bodies_make_two_jobs(client, redis_conn):
    first = accepted(post_with_key(client, {"prompt": "hi"}, key=None))
    second = accepted(post_with_key(client, {"prompt": "hi"}, key=None))

    assert first["id"] != second["id"]
    assert rq_job_ids(redis_conn) == {first["id"], second["id"]}
    assert redis_conn.keys("llmjobs:idempotency:*") == []


# --- expiry ----------------------------------------------------------------------------


def test_the_key_expires_after_the_default_ttl(client, redis_conn):
    accepted(post_with_key(client, {"prompt": "hi"}))

    ttl = redis_conn.ttl(idempotency_key("alice", KEY))

    assert DEFAULT_TTL_S - 5 <= ttl <= DEFAULT_TTL_S


@pytest.fixture
def short_ttl_client(app, monkeypatch):
    """A second app, made after `app` set the tests' environment, with IDEMPOTENCY_TTL_S=120."""
    monkeypatch.setenv("IDEMPOTENCY_TTL_S", "120")
    return create_app().test_client()


def test_the_ttl_follows_the_setting(short_ttl_client, redis_conn):
    accepted(post_with_key(short_ttl_client, {"prompt": "hi"}))

    assert 115 <= redis_conn.ttl(idempotency_key("alice", KEY)) <= 120


def test_after_the_key_expires_the_same_request_makes_a_new_job(short_ttl_client, redis_conn):
    first = accepted(post_with_key(short_ttl_client, {"prompt": "hi"}))
    redis_conn.delete(idempotency_key("alice", KEY))  # what the TTL does

    second = accepted(post_with_key(short_ttl_client, {"prompt": "hi"}), 202)

    assert second["id"] != first["id"]
    assert rq_job_ids(redis_conn) == {first["id"], second["id"]}
    assert accepted(post_with_key(short_ttl_client, {"prompt": "hi"}), 200)["id"] == second["id"]


def test_when_the_first_job_expired_the_same_request_makes_a_new_job(client, redis_conn):
    first = accepted(post_with_key(client, {"prompt": "hi"}))
    redis_conn.delete(f"rq:job:{first['id']}")  # past its result TTL; the key still lives

    second = accepted(post_with_key(client, {"prompt": "hi"}), 202)

    assert second["id"] != first["id"]
    assert rq_job_ids(redis_conn) == {second["id"]}
    # the key now names the new job, for its full TTL again
    assert accepted(post_with_key(client, {"prompt": "hi"}), 200)["id"] == second["id"]
    assert redis_conn.ttl(idempotency_key("alice", KEY)) >= DEFAULT_TTL_S - 5


# --- the header itself -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "k" * 256], ids=["empty", "256-chars"])
def test_a_key_out_of_bounds_is_422_and_creates_nothing(client, redis_conn, key):
    body = assert_error_shape(post_with_key(client, {"prompt": "hi"}, key=key), 422)

    assert "Idempotency-Key" in body["errors"]["headers"], body
    assert rq_job_ids(redis_conn) == set()
    assert redis_conn.keys("llmjobs:idempotency:*") == []


def test_a_key_of_255_chars_is_accepted(client, redis_conn):
    job = accepted(post_with_key(client, {"prompt": "hi"}, key="k" * 255))

    assert accepted(post_with_key(client, {"prompt": "hi"}, key="k" * 255), 200)["id"] == job["id"]


# --- concurrency -----------------------------------------------------------------------


def test_concurrent_requests_with_one_key_make_one_job(app, redis_conn):
    responses = all_at_once(8, lambda: post_with_key(app.test_client(), {"prompt": "hi"}))
    codes = sorted(response.status_code for response in responses)
    assert codes == [200] * 7 + [202], [r.get_data(as_text=True) for r in responses]
    ids = {response.get_json()["id"] for response in responses}
    assert len(ids) == 1
    assert rq_job_ids(redis_conn) == ids
    assert queued(redis_conn) == list(ids)
