"""The state changes a client asks for: cancel a job, run a finished one again."""

from __future__ import annotations

import json

from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry
from rq.utils import now, utcformat

from service.jobs.control import request_cancel
from service.jobs.deliveries import queue_delivery
from service.jobs.events import announce_end
from service.jobs.progress import start_new_run
from service.jobs.resource import job_resource
from service.jobs.status import CANCELED, FAILED, QUEUED, TERMINAL_STATUSES, public_status

# How long a cancel request outlives the job's own deadline, for an attempt that starts late.
CANCEL_REQUEST_MARGIN_S = 300


class InvalidTransition(Exception):
    """The job is not in a state that allows this; the message says why."""


def cancel_job(job: Job) -> None:
    """A queued job (also one waiting to retry) is canceled at once; a running one is
    asked to stop and does within a second, keeping its partial text."""
    status = public_status(job)
    if status in TERMINAL_STATUSES:
        raise InvalidTransition(f"the job has already {_past(status)}")
    # Also covers a job a worker dequeues between our read and the cancel below.
    request_cancel(job.connection, job.id, ttl_s=job.meta["timeout_s"] + CANCEL_REQUEST_MARGIN_S)
    if status == QUEUED:
        job.ended_at = now()
        with job.connection.pipeline() as pipe:
            job.cancel(pipeline=pipe)
            pipe.hset(job.key, "ended_at", utcformat(job.ended_at))
            pipe.execute()
        job.refresh()  # cancel() re-read the old status mid-pipeline
        announce_end(job)


def rerun_job(job: Job, *, max_attempts: int) -> None:
    """Queue a failed or canceled job again, with a fresh deadline and attempt budget.
    `attempts` keeps counting: it is every LLM call made for the job."""
    status = public_status(job)
    if status not in (FAILED, CANCELED):
        raise InvalidTransition(f"only a failed or canceled job can be retried; this one is {status}")
    registry = (
        CanceledJobRegistry(job.origin, job.connection, serializer=job.serializer)
        if job.get_status(refresh=False) == JobStatus.CANCELED
        else job.failed_job_registry
    )
    # A new run, a new story: its stream starts empty and its end is announced afresh.
    start_new_run(job, max_attempts=max_attempts)
    registry.requeue(job)  # saves the job, meta included, and pushes it on its queue


def redeliver_webhook(job: Job) -> None:
    """Queue the ended job's webhook again, under the same id (receivers dedupe by it)."""
    status = public_status(job)
    if status not in TERMINAL_STATUSES or job.meta.get("webhook") is None:
        raise InvalidTransition("only an ended job with a callback_url has a webhook to send")
    job.meta["webhook"].update(state="pending", next_attempt_at=None)
    job.save_meta()
    queue_delivery(job, json.dumps(job_resource(job)))


def _past(status: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "canceled": "been canceled"}[status]
