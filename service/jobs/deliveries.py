"""A job's webhook: its delivery is queued when the job ends, on a queue of its own (so a
slow receiver never holds an LLM worker), and its state is kept on the job."""

from __future__ import annotations

from contextlib import suppress
from typing import Any
from uuid import uuid4

from redis import Redis
from rq import Queue
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job

from service.jobs.queues import DELIVERY_TASK, SERIALIZER, WEBHOOK_QUEUE

# Deliveries live long enough for the whole retry schedule to play out (~24 h).
DELIVERY_RECORD_TTL_S = 3 * 24 * 3600
# RQ's timeout for one attempt: a backstop well past WEBHOOK_TIMEOUT_S, which bounds the request.
DELIVERY_JOB_TIMEOUT_S = 120


def new_webhook(url: str) -> dict[str, Any]:
    """The delivery state of a webhook about to be sent; `id` stays the same across retries."""
    return {
        "id": f"msg_{uuid4().hex}",
        "url": url,
        "state": "pending",  # pending -> delivered | failed | gone (410)
        "attempts": 0,
        "last_status_code": None,
        "last_error": None,
        "next_attempt_at": None,
    }


def queue_delivery(job: Job, payload: str, *, first: bool = False) -> None:
    """Send `payload` (the job resource, JSON) to the job's callback URL as webhook
    `job.meta["webhook"]["id"]`; `first`: its first delivery, queued once however often
    the job's end is published."""
    enqueue_delivery(job.connection, job.meta["webhook"], payload, subject_id=job.id, first=first)


def enqueue_delivery(connection: Redis, webhook: dict[str, Any], payload: str, *, subject_id: str,
                     kind: str = "job", first: bool = False) -> None:  # fmt: skip
    """Queue the delivery task for `webhook`; `kind` says where its state is kept: on the
    job `subject_id` ("job"), or on the batch `subject_id` ("batch"). The first delivery
    of a webhook has an id of its own, so queuing it again (an end published twice) is a
    no-op; a redelivery is a new delivery job."""
    kwargs = {"job_id": subject_id, "webhook_id": webhook["id"], "url": webhook["url"], "payload": payload}
    with suppress(DuplicateJobError):  # queued already
        Queue(WEBHOOK_QUEUE, connection=connection, serializer=SERIALIZER).enqueue(
            DELIVERY_TASK,
            kwargs=kwargs if kind == "job" else {**kwargs, "kind": kind},
            job_id=f"delivery-{webhook['id']}" if first else None,
            unique=first,
            job_timeout=DELIVERY_JOB_TIMEOUT_S,
            result_ttl=DELIVERY_RECORD_TTL_S,
            failure_ttl=DELIVERY_RECORD_TTL_S,
            description=f"webhook {webhook['id']} for {kind} {subject_id}",
        )


def job_client(connection: Redis, job_id: str) -> str | None:
    """Whose job it is (whose secret signs its webhook); None once it has expired."""
    try:
        return Job.fetch(job_id, connection=connection, serializer=SERIALIZER).meta.get("client")
    except NoSuchJobError:
        return None


def update_delivery(connection: Redis, job_id: str, webhook_id: str, **changes: Any) -> None:
    """Record an attempt's outcome on the job. Only the delivery task writes this, one
    attempt at a time, and nothing else writes an ended job's meta (a re-run starts a new
    webhook, whose id this one no longer matches)."""
    try:
        job = Job.fetch(job_id, connection=connection, serializer=SERIALIZER)
    except NoSuchJobError:
        return  # the job expired; its delivery record is all that is left
    webhook = job.meta.get("webhook")
    if webhook is None or webhook["id"] != webhook_id:
        return
    webhook.update(changes)
    job.save_meta()
