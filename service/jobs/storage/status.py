"""Public job status, derived from RQ's status."""

from __future__ import annotations

from rq.job import Job, JobStatus

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
PUBLIC_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED)
TERMINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELED})

_FROM_RQ = {
    JobStatus.CREATED: QUEUED,
    JobStatus.QUEUED: QUEUED,
    JobStatus.DEFERRED: QUEUED,
    JobStatus.SCHEDULED: QUEUED,  # waiting for a retry is still "queued" to a client
    JobStatus.STARTED: RUNNING,
    JobStatus.FINISHED: SUCCEEDED,
    JobStatus.FAILED: FAILED,
    JobStatus.STOPPED: FAILED,  # stopped by an operator, not canceled by the client
    JobStatus.CANCELED: CANCELED,
}


def has_unreadable_record(job: Job) -> bool:
    """RQ keeps a meta it cannot deserialize as `{"unserialized": <raw>}`: another tool
    rewrote the job with another serializer (`rq requeue` without `--serializer` pickles
    it). Our fields are gone; the raw bytes are never unpickled."""
    return set(job.meta) == {"unserialized"}


def public_status(job: Job) -> str:
    if has_unreadable_record(job):
        return FAILED  # whatever RQ says, it cannot run as ours again
    status = _FROM_RQ.get(job.get_status(refresh=False), QUEUED)
    # A running job stopped by a cancel request ends in RQ's failed state; its meta says
    # why. Until RQ has marked it failed (and set its end time) it is still running.
    if status == FAILED and job.meta.get("canceled_at") is not None:
        return CANCELED
    return status
