"""Batches: many jobs queued in one request and one admitted write, followed as a whole.

A batch is a hash `llmjobs:batch:<id>` (client, job ids, created_at, remaining count,
callback_url, metadata; later finished_at and the webhook's delivery state) that lives
RESULT_TTL_S. Each of its jobs carries `batch_id` in its meta. When a job's end is
announced (`service.jobs.push.events.announce_end`, once per end), `job_ended` counts it,
once per job however often it runs: the call that counts the last job sets `finished_at`
and queues the batch's webhook. A job re-run after that does not reopen the batch: it
stays `done`, while its counts always show the jobs' current statuses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Unpack

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.job import Job

from service.jobs.observability import metrics
from service.jobs.push.job_webhooks import (
    DeliveryOutcome,
    enqueue_delivery,
    new_webhook,
    reserve_redelivery,
    settle_delivery,
    webhook_body,
)
from service.jobs.storage import index, replies, scripts
from service.jobs.storage.admission import Allowance, Gate, admit
from service.jobs.storage.connection import read_hash
from service.jobs.storage.idempotency import IdempotencyClaim
from service.jobs.storage.ids import is_job_id, new_job_id
from service.jobs.storage.keys import batch_key
from service.jobs.storage.lookup import fetch_jobs
from service.jobs.storage.record import JobRecord, WebhookState
from service.jobs.storage.resource import iso_timestamp, job_path, webhook_view
from service.jobs.storage.status import PUBLIC_STATUSES, public_status
from service.jobs.storage.submit import NewJob, prepare_job, reservations_of

BatchStatus = Literal["running", "done"]
BATCH_RUNNING: BatchStatus = "running"
BATCH_DONE: BatchStatus = "done"


@dataclass(frozen=True)
class SubmittedBatch:
    record: dict[str, Any]  # as `fetch_client_batch` returns it
    jobs: list[Job] | None  # in request order; None: not read (an earlier request's batch)
    created: bool = True  # False: an earlier request with the same Idempotency-Key created it
    allowance: Allowance | None = None  # the client's submit limit after this one (None: no limit)


def batch_path(batch_id: str) -> str:
    return f"/v1/batches/{batch_id}"


def submit_batch(
    connection: Redis,
    queues: dict[str, Queue],
    jobs: list[NewJob],
    *,
    gate: Gate,
    max_attempts: int,
    result_ttl_s: int,
    metadata: dict[str, str] | None = None,
    callback_url: str | None = None,
    idempotency: IdempotencyClaim | None = None,
) -> SubmittedBatch:
    """Store every job, enqueue each on its priority's queue, index them for the client and
    store the batch record: all in one admitted write (see admission; a batch counts as one
    submit). Raises admission's OverLimit and QueueFull."""
    client = gate.client
    batch_id = new_job_id()
    datas = [
        prepare_job(job, client=client, max_attempts=max_attempts, result_ttl_s=result_ttl_s, batch_id=batch_id)
        for job in jobs
    ]
    by_queue: dict[str, list] = {}
    for job, data in zip(jobs, datas, strict=True):
        by_queue.setdefault(job.queue_name, []).append(data)
    record = {
        "client": client,
        "job_ids": json.dumps([data.job_id for data in datas]),  # request order
        "created_at": iso_timestamp(datetime.now(UTC)),
        "remaining": len(datas),
        "callback_url": callback_url or "",
        "metadata": json.dumps(metadata or {}),
    }

    def write(pipe: Pipeline) -> SubmittedBatch:
        enqueued: dict[str, Job] = {}
        for name, group in by_queue.items():
            for job in queues[name].enqueue_many(group, pipeline=pipe):
                index.add(pipe, client, job.id, job.created_at)
                enqueued[job.id] = job
            metrics.JOBS_SUBMITTED.inc(pipe, len(group), queue=name)
        pipe.hset(batch_key(batch_id), mapping=record)
        pipe.expire(batch_key(batch_id), result_ttl_s)
        return SubmittedBatch({**record, "id": batch_id}, [enqueued[data.job_id] for data in datas])

    def earlier(earlier_id: str) -> SubmittedBatch | None:
        found = fetch_client_batch(connection, client, earlier_id)
        return None if found is None else SubmittedBatch(found, None, created=False)

    reservations = reservations_of([(data.job_id, job) for job, data in zip(jobs, datas, strict=True)])
    admitted = admit(
        connection, gate, hit_id=batch_id, write=write, idempotency=idempotency, earlier=earlier,
        reservations=reservations,
    )  # fmt: skip
    return replace(admitted.created, allowance=admitted.allowance)


def fetch_client_batch(connection: Redis, client: str, batch_id: str) -> dict[str, str] | None:
    """The batch record, or None if it does not exist or belongs to someone else (both look alike)."""
    if not is_job_id(batch_id):
        return None
    record = _read_batch(connection, batch_id)
    if record.get("client") != client:
        return None
    return {**record, "id": batch_id}


def batch_client(connection: Redis, batch_id: str) -> str | None:
    """Whose batch it is (whose secret signs its webhook); None once it has expired."""
    return _read_field(connection, batch_id, "client")


def _read_batch(connection: Redis, batch_id: str) -> dict[str, str]:
    """The batch's hash, decoded ({} once it has expired)."""
    return {k.decode(): v.decode() for k, v in read_hash(connection, batch_key(batch_id)).items()}


def _read_field(connection: Redis, batch_id: str, field: str) -> str | None:
    """One field of the batch's hash, decoded; None once it has expired."""
    value = replies.as_bytes(connection.hget(batch_key(batch_id), field))
    return None if value is None else value.decode()


def batch_resource(
    connection: Redis, record: dict[str, Any], jobs: Sequence[Job | None] | None = None
) -> dict[str, Any]:
    """The public batch resource: built here and nowhere else. Its jobs are read in one
    round trip, unless the caller has them already (just enqueued)."""
    job_ids = json.loads(record["job_ids"])
    if jobs is None:
        jobs = fetch_jobs(connection, job_ids)
    counts = dict.fromkeys(PUBLIC_STATUSES, 0)
    for job in jobs:
        if job is not None:  # a job past its result TTL (or unreadable) is no longer counted
            counts[public_status(job)] += 1
    finished_at = record.get("finished_at") or None
    return {
        "id": record["id"],
        "status": BATCH_DONE if finished_at else BATCH_RUNNING,
        "counts": counts,
        "job_ids": job_ids,
        "created_at": record["created_at"],
        "finished_at": finished_at,
        "metadata": json.loads(record.get("metadata") or "{}"),
        "webhook": webhook_view(json.loads(record["webhook"])) if record.get("webhook") else None,
        "links": {"self": batch_path(record["id"]), "jobs": [job_path(job_id) for job_id in job_ids]},
    }


def job_ended(job: Job) -> None:
    """Count the end of a job of a batch (called by `announce_end`, once per end). The call
    that counts the last job marks the batch done and queues its webhook, if it has one."""
    batch_id = JobRecord(job).batch_id
    if not batch_id:
        return
    connection = job.connection
    left = replies.as_int(
        scripts.registered(connection, scripts.COUNT_BATCH_END)(
            keys=[batch_key(batch_id)], args=[job.id, iso_timestamp(datetime.now(UTC))]
        )
    )
    if left > 0:
        return
    # The last end (0), or one counted before (-1: a replayed publication that may have
    # stopped before the batch's webhook was queued, or a later re-run of a job).
    record = _read_batch(connection, batch_id)
    if not record.get("callback_url") or record.get("remaining") != "0":
        return
    if not record.get("webhook"):
        # One webhook id per batch, whoever gets here first.
        connection.hsetnx(batch_key(batch_id), "webhook", json.dumps(new_webhook(record["callback_url"])))
        webhook = _read_field(connection, batch_id, "webhook")
        if webhook is None:  # the batch expired between the two commands: nothing to send
            return
        record["webhook"] = webhook
    _send_webhook(connection, {**record, "id": batch_id}, json.loads(record["webhook"]), first=True)


def redeliver_batch_webhook(connection: Redis, record: dict[str, Any], *, max_pending: int) -> bool:
    """Queue the batch's webhook again, under the same id (receivers dedupe by it), with
    the batch as it is now. False when there is none to send: no callback_url, or not done.
    Refused while it is pending, or the client has `max_pending` pending (see deliveries)."""
    if not record.get("webhook"):
        return False
    webhook: WebhookState = json.loads(record["webhook"])
    reserve_redelivery(connection, record["client"], webhook["id"], max_pending=max_pending)
    _send_webhook(connection, record, {**webhook, "state": "pending", "next_attempt_at": None})
    return True


def _send_webhook(connection: Redis, record: dict[str, Any], webhook: WebhookState, *, first: bool = False) -> None:
    """Store the webhook's state on the batch and queue its delivery; the body is the batch."""
    record["webhook"] = json.dumps(webhook)
    if not first:
        connection.hset(batch_key(record["id"]), "webhook", record["webhook"])
    payload = webhook_body("batch.done", batch_resource(connection, record))
    enqueue_delivery(connection, webhook, payload, subject_id=record["id"], client=record["client"], kind="batch",
                     first=first)  # fmt: skip


def update_batch_delivery(
    connection: Redis, batch_id: str, webhook_id: str, **changes: Unpack[DeliveryOutcome]
) -> None:
    """Record a delivery attempt's outcome on the batch (only the delivery task writes it)."""
    # One read of both fields: the batch may expire between two reads.
    raw, client = replies.as_values(connection.hmget(batch_key(batch_id), ["webhook", "client"]))
    if raw is None or client is None:
        return  # the batch expired
    webhook = json.loads(raw)
    if webhook["id"] != webhook_id:
        return
    webhook.update(changes)
    connection.hset(batch_key(batch_id), "webhook", json.dumps(webhook))
    settle_delivery(connection, client.decode(), webhook_id, changes["state"])
