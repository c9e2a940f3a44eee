"""The state changes a client asks for: cancel a job, run a finished one again."""

from __future__ import annotations

from redis.exceptions import WatchError
from rq import Queue
from rq.defaults import DEFAULT_RESULT_TTL
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry
from rq.utils import now, utcformat

from service.documents.steps import STEP_FAILED
from service.jobs.observability import budgets
from service.jobs.push.events import announce_end
from service.jobs.push.job_webhooks import queue_delivery, reserve_redelivery
from service.jobs.running.progress import Superseded, record_error, start_new_run
from service.jobs.storage.keys import cancel_key
from service.jobs.storage.record import JobError, JobRecord, has_unreadable_record, job_error
from service.jobs.storage.resource import job_resource
from service.jobs.storage.status import (
    CANCELED,
    FAILED,
    QUEUED,
    SUCCEEDED,
    TERMINAL_STATUSES,
    PublicStatus,
    public_status,
)

# How long a cancel request outlives the job's own deadline, for an attempt that starts late.
CANCEL_REQUEST_MARGIN_S = 300
# A queued job's cancel is tried again while its hash keeps changing under it (say, a
# worker is taking it); past this many rounds the client is told to try again.
MAX_WATCH_ROUNDS = 5


class InvalidTransition(Exception):
    """The job is not in a state that allows this; the message says why."""


def cancel_job(job: Job) -> None:
    """A queued job (also one waiting to retry) is canceled at once; a running one is
    asked to stop and does within a second, keeping its partial text.

    Atomic against a concurrent cancel, retry or dequeue: a queued job is canceled in one
    MULTI/EXEC that fails if its hash changed since its status was read (then its status
    is read again), and a running job's cancel request is set only if none is. The
    request that loses finds the job changed and gets InvalidTransition."""
    for _ in range(MAX_WATCH_ROUNDS):
        with job.connection.pipeline() as pipe:
            pipe.watch(job.key)
            job.refresh()
            status = public_status(job)
            if status in TERMINAL_STATUSES:
                raise InvalidTransition(f"the job has already {_past(status)}")
            cancel_ttl_s = JobRecord(job).timeout_s + CANCEL_REQUEST_MARGIN_S
            if status != QUEUED and JobRecord(job).provider_batch is not None:
                pipe.unwatch()
                if not end_in_provider_batch(job, job_error("canceled", "canceled on request"), canceled=True):
                    raise InvalidTransition("the job has already succeeded")
                return
            if status != QUEUED:
                pipe.unwatch()
                if not job.connection.set(cancel_key(job.id), 1, ex=cancel_ttl_s, nx=True):
                    raise InvalidTransition("the job is being canceled already")
                return
            job.ended_at = now()
            pipe.multi()
            # Also covers a worker that popped the job's id but has not marked it started.
            pipe.set(cancel_key(job.id), 1, ex=cancel_ttl_s)
            try:
                job.cancel(pipeline=pipe)
            except InvalidJobOperation:
                continue  # RQ re-read the status outside the transaction: another request won

            pipe.hset(job.key, "ended_at", utcformat(job.ended_at))
            budgets.release(pipe, job)  # it never ran: nothing spent
            # RQ's cancel keeps the hash for good; a canceled job is kept like a finished one.
            pipe.expire(job.key, job.get_result_ttl(DEFAULT_RESULT_TTL))
            try:
                pipe.execute()
            except WatchError:
                continue  # it changed meanwhile (a worker took it, another request won): look again
        job.refresh()
        announce_end(job)
        return
    raise InvalidTransition("the job keeps changing; try again")


def end_in_provider_batch(job: Job, error: JobError, *, canceled: bool = False) -> bool:
    """A batch-tier job in a provider batch has no run to stop: it ends now (canceled, or
    past its deadline), and its result, when it comes, is dropped (the batch tier sees it
    ended). Its completion is claimed, so a result read at the same moment cannot complete
    it too: False when that result won."""
    try:
        record_error(job, error, canceled=canceled, completes_for_s=job.get_result_ttl(DEFAULT_RESULT_TTL))
    except Superseded:
        return False
    queue = Queue(job.origin, connection=job.connection, serializer=job.serializer)
    end_outside_run(job, queue, error["type"])
    return True


def end_outside_run(job: Job, queue: Queue, why: str) -> None:
    """Fail a started job that no run will end (its error recorded already): its status,
    end time and failed-registry entry, its budget reservation released, its end published.
    For a batch-tier job canceled in its provider batch, and a job whose worker was lost."""
    with job.connection.pipeline() as pipe:
        budgets.release(pipe, job)
        job.ended_at = now()
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        pipe.hset(job.key, "ended_at", utcformat(job.ended_at))
        queue.failed_job_registry.add(job, ttl=job.failure_ttl, exc_string=why, pipeline=pipe)
        pipe.execute()
    announce_end(job)


def rerun_job(job: Job, *, max_attempts: int) -> None:
    """Queue a failed or canceled job again, with a fresh deadline and attempt budget; or a
    document job that succeeded with failed steps, to run those steps again. `attempts`
    keeps counting: it is every LLM call made for the job.

    Taking the job out of its failed/canceled/finished registry (ZREM) is the claim: of
    concurrent retries one gets it, and only that one starts the new run (which empties the
    event stream); the others get InvalidTransition and change nothing."""
    status = public_status(job)
    if has_unreadable_record(job):
        raise InvalidTransition("the job's record cannot be read (see its error): submit it again")
    if status == SUCCEEDED and not _has_failed_steps(JobRecord(job)):
        raise InvalidTransition("a succeeded job is retried only when it is a document job with failed steps")
    if status not in (FAILED, CANCELED, SUCCEEDED):
        raise InvalidTransition(f"only a job that has ended can be retried; this one is {status}")
    registry = {
        JobStatus.CANCELED: CanceledJobRegistry(job.origin, job.connection, serializer=job.serializer),
        JobStatus.FINISHED: job.finished_job_registry,
    }.get(job.get_status(refresh=False), job.failed_job_registry)
    if not job.connection.zrem(registry.key, job.id):
        raise InvalidTransition("the job is being retried already")
    # A new run, a new story: its stream starts empty and its end is announced afresh.
    start_new_run(job, max_attempts=max_attempts)
    job.started_at = job.ended_at = None
    queue = Queue(job.origin, connection=job.connection, serializer=job.serializer)
    with job.connection.pipeline() as pipe:
        queue.enqueue_job(job, pipeline=pipe)  # saves the job, meta included, and pushes it on its queue
        pipe.execute()


def _has_failed_steps(record: JobRecord) -> bool:
    return any(step["status"] == STEP_FAILED for step in record.steps)


def redeliver_webhook(job: Job, *, max_pending: int) -> None:
    """Queue the ended job's webhook again, under the same id (receivers dedupe by it).
    Refused while it is pending, or the client has `max_pending` pending (see deliveries)."""
    record = JobRecord(job)
    webhook = record.webhook
    if public_status(job) not in TERMINAL_STATUSES or webhook is None:
        raise InvalidTransition("only an ended job with a callback_url has a webhook to send")
    reserve_redelivery(job.connection, record.client, webhook["id"], max_pending=max_pending)
    webhook["state"], webhook["next_attempt_at"] = "pending", None
    job.save_meta()
    queue_delivery(job, job_resource(job))


def _past(status: PublicStatus) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "canceled": "been canceled"}[status]
