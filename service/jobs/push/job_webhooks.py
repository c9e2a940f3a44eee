"""A job's webhook: its delivery is queued when the job ends, on a queue of its own (so a
slow receiver never holds an LLM worker), and its state is kept on the job.

Each client's pending webhooks (queued, or waiting for a retry) are also kept in a sorted
set, scored by when their delivery record lapses. A redelivery a client asks for is
refused while that webhook is pending already, and while the client has
WEBHOOK_MAX_PENDING_PER_CLIENT pending: a loop of redelivery requests cannot fill the
shared webhooks queue. The ends of jobs are not refused (submits bound them).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack
from uuid import uuid4

from redis import Redis
from rq import Queue
from rq.exceptions import DuplicateJobError
from rq.job import Job

from service.jobs.storage import scripts
from service.jobs.storage.keys import pending_webhooks_key
from service.jobs.storage.lookup import fetch_job
from service.jobs.storage.queues import DELIVERY_TASK, SERIALIZER, WEBHOOK_QUEUE
from service.jobs.storage.record import (
    JobRecord,
    WebhookDeliveryState,
    WebhookState,
    delivery_meta,
    has_unreadable_record,
)
from service.jobs.storage.resource import iso_timestamp

# Deliveries live long enough for the whole retry schedule to play out (~24 h).
DELIVERY_RECORD_TTL_S = 3 * 24 * 3600
# RQ's timeout for one attempt: a backstop well past WEBHOOK_TIMEOUT_S, which bounds the request.
DELIVERY_JOB_TIMEOUT_S = 120
FINAL_STATES = frozenset({"delivered", "failed", "gone"})


class DeliveryPending(Exception):
    """The webhook's delivery is still pending: it is not queued a second time."""


class TooManyPendingDeliveries(Exception):
    """The client has WEBHOOK_MAX_PENDING_PER_CLIENT webhooks pending already."""


class DeliveryAttempt(TypedDict):
    """One delivery attempt: how many so far, and how the last one went."""

    attempts: int
    last_status_code: int | None
    last_error: str | None


class DeliveryOutcome(DeliveryAttempt):
    """What a delivery attempt changes in a webhook's state."""

    state: WebhookDeliveryState
    next_attempt_at: float | None


def new_webhook(url: str) -> WebhookState:
    """The delivery state of a webhook about to be sent; `id` stays the same across retries."""
    return {
        "id": f"msg_{uuid4().hex}",
        "url": url,
        "state": "pending",
        "attempts": 0,
        "last_status_code": None,
        "last_error": None,
        "next_attempt_at": None,
    }


def reserve_redelivery(connection: Redis, client: str, webhook_id: str, *, max_pending: int) -> None:
    """Count a redelivery `client` asked for as pending, or refuse it: DeliveryPending,
    TooManyPendingDeliveries."""
    now = time.time()
    reserved = scripts.registered(connection, scripts.RESERVE_DELIVERY)(
        keys=[pending_webhooks_key(client)],
        args=[now, webhook_id, now + DELIVERY_RECORD_TTL_S, DELIVERY_RECORD_TTL_S, max_pending],
    )
    if reserved == 0:
        raise DeliveryPending("this webhook's delivery is still pending (see webhook.next_attempt_at)")
    if reserved == -1:
        raise TooManyPendingDeliveries(
            f"you have {max_pending} webhook deliveries pending (WEBHOOK_MAX_PENDING_PER_CLIENT); "
            "retry once some are done"
        )


def settle_delivery(connection: Redis, client: str, webhook_id: str, state: WebhookDeliveryState) -> None:
    """A delivery attempt's outcome: a final one takes the webhook off the client's pending set."""
    if state in FINAL_STATES:
        connection.zrem(pending_webhooks_key(client), webhook_id)


def webhook_body(event_type: str, resource: dict[str, Any]) -> str:
    """A webhook's body in the Standard Webhooks payload shape: `type` (`job.succeeded`,
    `job.failed`, `job.canceled`, `batch.done`), `timestamp` (when that happened: the end,
    the same on a redelivery) and `data`, the resource without its `webhook`: that is the
    state of the very delivery carrying it, always "pending" as it is sent."""
    data = {name: value for name, value in resource.items() if name != "webhook"}
    timestamp = resource.get("finished_at") or iso_timestamp(datetime.now(UTC))
    return json.dumps({"type": event_type, "timestamp": timestamp, "data": data})


def queue_delivery(job: Job, resource: dict[str, Any], *, first: bool = False) -> None:
    """Send the ended job (`resource`) to its callback URL as its webhook (the record's
    `webhook`, whose id stays the same); `first`: its first delivery, queued once however
    often the job's end is published."""
    payload = webhook_body(f"job.{resource['status']}", resource)
    record = JobRecord(job)
    webhook = record.webhook
    assert webhook is not None, "the job's end gave it its webhook"
    enqueue_delivery(
        job.connection, webhook, payload, subject_id=job.id, client=record.client, first=first,
        trace_context=record.trace_context,
    )  # fmt: skip


def enqueue_delivery(
    connection: Redis, webhook: WebhookState, payload: str, *, subject_id: str, client: str, kind: str = "job",
    first: bool = False, trace_context: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """Queue the delivery task for `webhook`, pending for `client`; `kind` says where its
    state is kept: on the job `subject_id` ("job"), or on the batch `subject_id` ("batch").
    The first delivery of a webhook has an id of its own, so queuing it again (an end
    published twice) is a no-op; a redelivery is a new delivery job. `trace_context`: the
    job's, so that its delivery belongs to the caller's trace."""
    kwargs = {"job_id": subject_id, "webhook_id": webhook["id"], "url": webhook["url"], "payload": payload}
    try:
        Queue(WEBHOOK_QUEUE, connection=connection, serializer=SERIALIZER).enqueue(
            DELIVERY_TASK,
            kwargs=kwargs if kind == "job" else {**kwargs, "kind": kind},
            job_id=f"delivery-{webhook['id']}" if first else None,
            unique=first,
            job_timeout=DELIVERY_JOB_TIMEOUT_S,
            result_ttl=DELIVERY_RECORD_TTL_S,
            failure_ttl=DELIVERY_RECORD_TTL_S,
            description=f"webhook {webhook['id']} for {kind} {subject_id}",
            meta=delivery_meta(trace_context=trace_context),
        )
    except DuplicateJobError:
        return  # queued already (and maybe settled since): not pending again
    with connection.pipeline(transaction=False) as pipe:
        pipe.zadd(pending_webhooks_key(client), {webhook["id"]: time.time() + DELIVERY_RECORD_TTL_S})
        pipe.expire(pending_webhooks_key(client), DELIVERY_RECORD_TTL_S)
        pipe.execute()


def job_client(connection: Redis, job_id: str) -> str | None:
    """Whose job it is (whose secret signs its webhook); None once it has expired."""
    job = fetch_job(connection, job_id)
    if job is None or has_unreadable_record(job):  # its fields are gone: no one to sign for
        return None
    return JobRecord(job).client


def update_delivery(connection: Redis, job_id: str, webhook_id: str, **changes: Unpack[DeliveryOutcome]) -> None:
    """Record an attempt's outcome on the job. Only the delivery task writes this, one
    attempt at a time, and nothing else writes an ended job's meta (a re-run starts a new
    webhook, whose id this one no longer matches)."""
    job = fetch_job(connection, job_id)
    if job is None:
        return  # the job expired; its delivery record is all that is left
    record = JobRecord(job)
    webhook = record.webhook
    if webhook is None or webhook["id"] != webhook_id:
        return
    record.webhook = WebhookState(id=webhook["id"], url=webhook["url"], **changes)
    job.save_meta()
    settle_delivery(connection, record.client, webhook_id, changes["state"])
