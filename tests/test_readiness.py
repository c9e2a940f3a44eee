"""/healthz (liveness) and /readyz (readiness: Redis reachable and a worker with a fresh
heartbeat on every queue; a warning when Redis would lose jobs on restart).

Workers are registered in Redis the way a real RQ worker does it (`register_birth`,
`heartbeat`) without running them: readiness reads only what they leave there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from rq import Worker
from rq.utils import now, utcformat

from service.app import create_app
from tests.support.error_shape import assert_error_shape
from tests.support.network import refused_port

QUEUES = ("high", "default", "batch", "low")  # every queue of client jobs, the batch tier's included


def register_worker(redis_conn: redis.Redis, *queues: str) -> Worker:
    """A worker as our worker registers one at start-up (RQ's own registration); `redis_conn`
    is flushed before each test."""
    worker = Worker(list(queues), connection=redis_conn)
    worker.register_birth()
    worker.heartbeat()
    return worker


def readyz(client):
    return client.get("/readyz")


def not_ready_checks(response) -> dict[str, str]:
    body = assert_error_shape(response, 503)
    return body["errors"]["checks"]


# --- liveness --------------------------------------------------------------------------


def test_healthz_answers_without_a_key(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


# --- readiness -------------------------------------------------------------------------


def test_readyz_without_workers_is_503_naming_every_queue(client, redis_conn):
    checks = not_ready_checks(readyz(client))

    assert checks["redis"] == "ok"
    assert {name: state != "ok" for name, state in checks.items() if name != "redis"} == {
        f"workers:{queue}": True for queue in QUEUES
    }


def test_readyz_with_a_worker_on_every_queue_is_200(client, redis_conn):
    for queue in QUEUES:
        register_worker(redis_conn, queue)

    response = readyz(client)

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["checks"] == {"redis": "ok", **{f"workers:{queue}": "ok" for queue in QUEUES}}
    assert body["warnings"] == []  # the tests' redis-server runs with AOF on


def test_one_worker_on_all_queues_is_enough(client, redis_conn):
    register_worker(redis_conn, *QUEUES)

    assert readyz(client).status_code == 200


def test_a_queue_without_a_worker_is_named(client, redis_conn):
    register_worker(redis_conn, "high")
    register_worker(redis_conn, "batch")
    register_worker(redis_conn, "default")

    checks = not_ready_checks(readyz(client))

    assert [name for name, state in checks.items() if state != "ok"] == ["workers:low"]


def test_a_worker_with_a_stale_heartbeat_does_not_count(client, redis_conn):
    stale = [register_worker(redis_conn, queue) for queue in QUEUES][-1]
    redis_conn.hset(stale.key, "last_heartbeat", utcformat(now() - timedelta(seconds=35)))

    checks = not_ready_checks(readyz(client))

    assert [name for name, state in checks.items() if state != "ok"] == ["workers:low"]
    # a fresh heartbeat brings it back
    stale.heartbeat()
    assert readyz(client).status_code == 200


# --- persistence -----------------------------------------------------------------------


def test_readyz_warns_when_redis_persistence_is_off(client, redis_conn):
    register_worker(redis_conn, *QUEUES)
    saves = redis_conn.config_get("save")["save"]
    try:
        redis_conn.config_set("appendonly", "no")
        redis_conn.config_set("save", "")

        response = readyz(client)

        assert response.status_code == 200, response.get_data(as_text=True)
        warnings = response.get_json()["warnings"]
        assert len(warnings) == 1 and "persistence" in warnings[0].lower(), warnings
    finally:
        # the session's Redis is shared with every other test
        redis_conn.config_set("appendonly", "yes")
        redis_conn.config_set("save", saves)
    assert readyz(client).get_json()["warnings"] == []


# --- Redis unreachable -----------------------------------------------------------------


@pytest.fixture
def down_port() -> Iterator[int]:
    with refused_port() as port:
        yield port


@pytest.fixture
def client_without_redis(app, monkeypatch, down_port):
    """An app made after `app` set the tests' environment, but pointing at a port that refuses connections."""
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{down_port}/0")
    return create_app().test_client()


def test_readyz_says_redis_is_unreachable_and_logs_where(client_without_redis, down_port, caplog):
    with caplog.at_level(logging.WARNING, logger="service.jobs.operations.readiness"):
        response = readyz(client_without_redis)

    assert not_ready_checks(response)["redis"] == "unreachable"
    # The caller learns nothing of the network behind the API; the log has the detail.
    body = response.get_data(as_text=True)
    assert str(down_port) not in body and "127.0.0.1" not in body and "Error" not in body, body
    assert "Redis unreachable" in caplog.text and str(down_port) in caplog.text


def test_healthz_answers_when_redis_is_unreachable(client_without_redis):
    response = client_without_redis.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
