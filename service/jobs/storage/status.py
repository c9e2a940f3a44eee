"""Public job status, derived from RQ's status."""

from __future__ import annotations

from typing import Final, Literal, get_args

from rq.job import Job, JobStatus

from service.jobs.storage.record import JobRecord, has_unreadable_record

PublicStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELED: Final = "canceled"
PUBLIC_STATUSES: tuple[PublicStatus, ...] = get_args(PublicStatus)
TERMINAL_STATUSES: frozenset[PublicStatus] = frozenset({SUCCEEDED, FAILED, CANCELED})

_FROM_RQ: dict[JobStatus, PublicStatus] = {
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


def public_status(job: Job) -> PublicStatus:
    if has_unreadable_record(job):
        return FAILED  # whatever RQ says, it cannot run as ours again
    status = _FROM_RQ.get(job.get_status(refresh=False), QUEUED)
    # A running job stopped by a cancel request ends in RQ's failed state; its meta says
    # why. Until RQ has marked it failed (and set its end time) it is still running.
    if status == FAILED and JobRecord(job).canceled_at is not None:
        return CANCELED
    return status


def may_show_as(rq_status: bytes | None, wanted: str) -> bool:
    """Whether a job whose RQ status field holds `rq_status` may show as `wanted`: a failed
    one may be canceled, and one whose status is missing or unknown may be anything (its
    whole record decides)."""
    try:
        shown = _FROM_RQ[JobStatus(rq_status.decode())] if rq_status else None
    except ValueError:
        shown = None
    return shown is None or shown == wanted or (shown == FAILED and wanted == CANCELED)
