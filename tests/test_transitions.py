"""Cancel and retry: POST /v1/jobs/{id}/cancel and /retry, in-process on a real Redis.

No worker runs here. Where a test needs a job a worker has touched (running, waiting to
retry, succeeded, failed), it puts the RQ job in that state the way RQ and our task code
leave it (see rq/worker/base.py, rq/job.py and service/jobs/running/progress.py), then asks the API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer

from service.jobs.storage.keys import cancel_key, completed_key
from tests.support.error_shape import assert_error_shape
from tests.support.jobs import submit_in_app
from tests.support.keys import ALICE, BOB

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
DEFAULT_MAX_ATTEMPTS = 5  # LLM_MAX_ATTEMPTS is not set in the tests
RETRYABLE_ERROR = {"type": "rate_limit", "message": "429 from the provider", "retryable": True}
FINAL_ERROR = {"type": "invalid_request", "message": "400 from the provider", "retryable": False}


# --- helpers ---------------------------------------------------------------------------


def cancel(client, job_id: str, headers: dict[str, str] = ALICE):
    return client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)


def retry(client, job_id: str, headers: dict[str, str] = ALICE):
    return client.post(f"/v1/jobs/{job_id}/retry", headers=headers)


def answered(response, code: int) -> dict[str, Any]:
    assert response.status_code == code, response.get_data(as_text=True)
    return response.get_json()


def rq_job(redis_conn: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)


def queue_of(job: Job) -> Queue:
    return Queue(job.origin, connection=job.connection, serializer=JSONSerializer)


def dequeued(redis_conn: redis.Redis, job_id: str, attempts: int = 1) -> Job:
    """The job as a worker holds it: off its queue, `attempts` LLM calls counted."""
    job = rq_job(redis_conn, job_id)
    queue_of(job).remove(job)
    job.started_at = datetime.now(UTC)
    job.meta.update(attempts=attempts, deadline_at=job.started_at.timestamp() + job.meta["timeout_s"])
    return job


def make_running(redis_conn: redis.Redis, job_id: str) -> Job:
    job = dequeued(redis_conn, job_id)
    job.set_status(JobStatus.STARTED)
    job.save()
    return job


def make_waiting_to_retry(redis_conn: redis.Redis, job_id: str, attempts: int = 1) -> datetime:
    """What `run_llm_job` returning `Retry(interval=...)` leaves: meta from `record_retry`, then
    RQ's `_handle_retry_result` puts the job in the ScheduledJobRegistry (status SCHEDULED)."""
    job = dequeued(redis_conn, job_id, attempts)
    due = datetime.now(UTC) + timedelta(minutes=5)
    job.meta.update(error=RETRYABLE_ERROR, next_attempt_at=math.floor(due.timestamp()))
    job.number_of_retries = attempts
    queue_of(job).schedule_job(job, due)  # saves the job, meta included
    return due


def make_succeeded(redis_conn: redis.Redis, job_id: str) -> Job:
    """`record_result` (meta + completion marker), then RQ's `_handle_success`."""
    job = dequeued(redis_conn, job_id)
    usage = {"input_tokens": 3, "output_tokens": 2}
    job.meta.update(
        text="Hello!", output_tokens=2, result={"stop_reason": "end_turn", "usage": usage, "cost_usd": 1e-5}
    )
    redis_conn.set(completed_key(job.id), 1, ex=job.result_ttl)
    job.ended_at = datetime.now(UTC)
    job.set_status(JobStatus.FINISHED)
    job.save()
    job.finished_job_registry.add(job, job.result_ttl)
    return job


def make_failed(redis_conn: redis.Redis, job_id: str, *, canceled_while_running: bool = False) -> Job:
    """`record_error` (meta), then RQ's `handle_job_failure`: status FAILED, in the FailedJobRegistry.
    A running job stopped by a cancel request ends the same way, with `canceled_at` in its meta."""
    job = dequeued(redis_conn, job_id, attempts=2)
    if canceled_while_running:
        job.meta.update(error={"type": "canceled", "message": "canceled on request", "retryable": False})
        job.meta["canceled_at"] = datetime.now(UTC).timestamp()
        redis_conn.set(cancel_key(job.id), 1, ex=600)
    else:
        job.meta.update(error=FINAL_ERROR)
    job.ended_at = datetime.now(UTC)
    job.set_status(JobStatus.FAILED)
    job.save()
    FailedJobRegistry(job.origin, connection=redis_conn, serializer=JSONSerializer).add(
        job, ttl=job.failure_ttl, exc_string="JobFailed: x"
    )
    return job


def canceled_queued(client, redis_conn: redis.Redis, job_id: str) -> None:
    answered(cancel(client, job_id), 200)


def canceled_waiting_to_retry(client, redis_conn: redis.Redis, job_id: str) -> None:
    make_waiting_to_retry(redis_conn, job_id, attempts=2)
    answered(cancel(client, job_id), 200)


def canceled_while_running(client, redis_conn: redis.Redis, job_id: str) -> None:
    make_failed(redis_conn, job_id, canceled_while_running=True)


def failed(client, redis_conn: redis.Redis, job_id: str) -> None:
    make_failed(redis_conn, job_id)


# --- cancel ----------------------------------------------------------------------------


def test_cancel_a_queued_job_cancels_it_at_once(client, redis_conn):
    job_id = submit_in_app(client, {"prompt": "hi", "priority": "low"})["id"]

    job = answered(cancel(client, job_id), 200)

    assert job["id"] == job_id
    assert job["status"] == "canceled"
    assert ISO_UTC.match(job["finished_at"] or ""), job["finished_at"]
    assert job_id not in Queue("low", connection=redis_conn, serializer=JSONSerializer).job_ids
    assert job_id in CanceledJobRegistry("low", connection=redis_conn).get_job_ids()
    # a worker that dequeued it meanwhile sees this and stops at once
    assert redis_conn.exists(cancel_key(job_id))
    assert answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200) == job


def test_cancel_twice_is_409(client, redis_conn):
    job_id = submit_in_app(client)["id"]
    answered(cancel(client, job_id), 200)

    body = assert_error_shape(cancel(client, job_id), 409)

    assert "canceled" in body["message"]


def test_cancel_another_clients_job_is_404_and_changes_nothing(client, redis_conn):
    job_id = submit_in_app(client)["id"]

    assert_error_shape(cancel(client, job_id, headers=BOB), 404)

    assert answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200)["status"] == "queued"
    assert not redis_conn.exists(cancel_key(job_id))


@pytest.mark.parametrize("action", [cancel, retry])
def test_unknown_job_is_404(client, redis_conn, action):
    assert_error_shape(action(client, uuid4().hex), 404)


def test_a_job_waiting_to_retry_is_queued_and_can_be_canceled(client, redis_conn):
    job_id = submit_in_app(client)["id"]
    due = make_waiting_to_retry(redis_conn, job_id)
    scheduled = ScheduledJobRegistry("default", connection=redis_conn, serializer=JSONSerializer)
    assert job_id in scheduled.get_job_ids()

    waiting = answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200)
    assert waiting["status"] == "queued"
    assert waiting["next_attempt_at"] == due.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # whole seconds, as the task stores it

    job = answered(cancel(client, job_id), 200)

    assert job["status"] == "canceled"
    assert job["next_attempt_at"] is None
    assert job_id not in scheduled.get_job_ids()
    assert job_id in CanceledJobRegistry("default", connection=redis_conn).get_job_ids()
    assert redis_conn.exists(cancel_key(job_id))


def test_cancel_a_running_job_asks_the_worker_to_stop(client, redis_conn):
    job_id = submit_in_app(client)["id"]
    make_running(redis_conn, job_id)

    job = answered(cancel(client, job_id), 202)

    assert job["status"] == "running"
    assert job["finished_at"] is None
    assert redis_conn.exists(cancel_key(job_id))
    # the worker ends it (keeping its partial text); the API does not
    assert rq_job(redis_conn, job_id).get_status() == JobStatus.STARTED
    assert job_id not in CanceledJobRegistry("default", connection=redis_conn).get_job_ids()


@pytest.mark.parametrize("finish", [make_succeeded, make_failed], ids=["succeeded", "failed"])
def test_a_finished_job_cannot_be_canceled(client, redis_conn, finish: Callable[..., Job]):
    job_id = submit_in_app(client)["id"]
    finish(redis_conn, job_id)
    before = answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200)

    body = assert_error_shape(cancel(client, job_id), 409)

    assert before["status"] in body["message"]
    assert answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200) == before
    assert not redis_conn.exists(cancel_key(job_id))


def test_a_succeeded_job_cannot_be_retried(client, redis_conn):
    job_id = submit_in_app(client)["id"]
    make_succeeded(redis_conn, job_id)
    before = answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200)
    assert before["status"] == "succeeded"
    assert before["result"]["text"] == "Hello!"

    body = assert_error_shape(retry(client, job_id), 409)

    assert "succeeded" in body["message"]
    assert answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200) == before
    assert job_id not in Queue("default", connection=redis_conn, serializer=JSONSerializer).job_ids


# --- retry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "end", [canceled_queued, canceled_waiting_to_retry, canceled_while_running, failed],
    ids=["canceled-queued", "canceled-waiting-to-retry", "canceled-while-running", "failed"],
)  # fmt: skip
def test_retry_queues_a_canceled_or_failed_job_again(client, redis_conn, end):
    job_id = submit_in_app(client)["id"]
    end(client, redis_conn, job_id)
    ended = answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200)
    assert ended["status"] in ("canceled", "failed")

    job = answered(retry(client, job_id), 202)

    assert job["status"] == "queued"
    assert job["error"] is None
    assert job["next_attempt_at"] is None
    assert job["finished_at"] is None
    assert job["attempts"] == ended["attempts"]
    assert job_id in Queue("default", connection=redis_conn, serializer=JSONSerializer).job_ids
    assert job_id not in CanceledJobRegistry("default", connection=redis_conn).get_job_ids()
    assert job_id not in FailedJobRegistry("default", connection=redis_conn).get_job_ids()
    assert job_id not in ScheduledJobRegistry("default", connection=redis_conn).get_job_ids()
    assert not redis_conn.exists(cancel_key(job_id))
    stored = rq_job(redis_conn, job_id)
    assert stored.get_status() == JobStatus.QUEUED
    assert stored.meta["attempt_limit"] == ended["attempts"] + DEFAULT_MAX_ATTEMPTS
    assert "deadline_at" not in stored.meta  # a fresh deadline from the next attempt on
    assert answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200) == job


@pytest.mark.parametrize("setup", [None, make_running], ids=["queued", "running"])
def test_retry_of_a_job_not_failed_or_canceled_is_409(client, redis_conn, setup):
    job_id = submit_in_app(client)["id"]
    if setup is not None:
        setup(redis_conn, job_id)
    before = answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200)

    body = assert_error_shape(retry(client, job_id), 409)

    assert before["status"] in body["message"]
    assert answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200) == before


def test_retry_another_clients_job_is_404_and_changes_nothing(client, redis_conn):
    job_id = submit_in_app(client)["id"]
    make_failed(redis_conn, job_id)

    assert_error_shape(retry(client, job_id, headers=BOB), 404)

    assert answered(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 200)["status"] == "failed"
    assert job_id in FailedJobRegistry("default", connection=redis_conn).get_job_ids()


# --- the document ----------------------------------------------------------------------


@pytest.mark.parametrize(("action", "codes"), [("cancel", {"200", "202", "409"}), ("retry", {"202", "409"})])
def test_both_routes_are_documented_with_their_409(client, action, codes):
    paths = client.get("/openapi.json").get_json()["paths"]

    operation = paths[f"/v1/jobs/{{job_id}}/{action}"]["post"]

    assert codes <= set(operation["responses"])
    assert operation["responses"]["409"]["description"]
