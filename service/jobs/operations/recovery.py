"""Jobs whose worker died (say, SIGKILL) are found by their lapsed lease and run again:
LLM jobs, and webhook deliveries (whose state would otherwise stay `pending`). Jobs a
worker took and never started are found by their stale claim and put back.

RQ alone notices such a job only when the started registry entry expires (~90 s after
the last heartbeat) and a worker's maintenance next runs (every 10 min): up to ~11 min.
A running job refreshes its lease every few seconds, so a started job without one, older
than the lease, has lost its worker.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import now

from service.jobs.observability import budgets, metrics
from service.jobs.running.progress import record_error
from service.jobs.running.transitions import end_outside_run
from service.jobs.storage import claims
from service.jobs.storage.keys import LEASE_TTL_S, lease_key
from service.jobs.storage.lookup import fetch_jobs
from service.jobs.storage.queues import ALL_QUEUES, CLIENT_TASKS, DELIVERY_TASK, make_queues
from service.jobs.storage.record import JobError, JobRecord, job_error

log = logging.getLogger(__name__)

WORKER_LOST = job_error("worker_lost", "the worker running this job stopped, and the job has no attempts left")


def recover_abandoned_jobs(connection: Redis) -> list[str]:
    """Re-queue (or, with no attempts left, fail) every started LLM job without a lease,
    and re-queue every webhook delivery without one: the attempt is made again, under the
    same webhook-id, which receivers dedupe by."""
    recovered = []
    for queue in make_queues(connection, ALL_QUEUES).values():
        registry = queue.started_job_registry
        entries = registry.get_job_and_execution_ids(cleanup=False)
        # Every poll reads all started jobs and their leases: two round trips per queue.
        jobs = fetch_jobs(connection, [job_id for job_id, _ in entries])
        leased = _leased(connection, [job_id for job_id, _ in entries])
        for (job_id, execution_id), job, lease in zip(entries, jobs, leased, strict=True):
            if job is None or lease:
                continue
            try:
                if _recover(job, execution_id, queue):
                    recovered.append(job_id)
            except RedisError:
                raise  # Redis away: the scheduler waits for it and carries on
            except Exception:  # a record we cannot read or write back: never a reason to stop recovering others
                log.exception("job %s in %s's started registry cannot be read: skipped", job_id, queue.name)
    return recovered


def put_back_unstarted_jobs(connection: Redis) -> None:
    """Put back at the front of its queue every job a worker took and never started (its
    claim is stale: storage/claims.py), counted and logged."""
    for job_id, queue_name in claims.put_back_stale(connection):
        metrics.JOBS_PUT_BACK.inc(connection, queue=queue_name)
        log.warning("job %s was taken from %s and never started: put back", job_id, queue_name)


def _recover(job: Job, execution_id: str, queue: Queue) -> bool:
    if job.func_name not in (*CLIENT_TASKS, DELIVERY_TASK) or not _abandoned(job):
        return False
    # ZREM decides who handles it: another recoverer, or RQ's own clean-up, gets 0.
    if not job.connection.zrem(queue.started_job_registry.key, f"{job.id}:{execution_id}"):
        return False
    if job.func_name in CLIENT_TASKS and JobRecord(job).attempts >= JobRecord(job).attempt_limit:
        _fail(job, queue, WORKER_LOST)
        log.warning("job %s lost its worker with no attempts left: failed", job.id)
    elif job.func_name in CLIENT_TASKS and not budgets.reserve_again(job, charge_lost_call=True):
        # The lost call counts as spent at its worst case (what it cost is unknown).
        _fail(job, queue, budgets.no_room_error(job, "a run after its worker was lost"))
        log.warning("job %s lost its worker and its client's budget has no room for another run: failed", job.id)
    else:
        queue.enqueue_job(job, at_front=True)  # it has waited long enough already
        _count_lost(job, queue)
        log.warning("job %s lost its worker: re-queued on %s", job.id, queue.name)
    return True


def _count_lost(job: Job, queue: Queue) -> None:
    if job.func_name == DELIVERY_TASK:
        metrics.WEBHOOK_DELIVERIES.inc(job.connection, kind=job.kwargs.get("kind", "job"), outcome="worker_lost")
    else:
        metrics.JOB_RETRIES.inc(job.connection, queue=queue.name, reason="worker_lost")


def _leased(connection: Redis, job_ids: list[str]) -> list[bool]:
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(lease_key(job_id))
        return [bool(found) for found in pipe.execute()]


def _abandoned(job: Job) -> bool:
    """Started, without a lease (checked by the caller), and not just starting."""
    if job.get_status(refresh=False) != JobStatus.STARTED:
        return False
    # A job that has just started may not have written its first lease yet.
    return job.started_at is not None and now() - job.started_at > timedelta(seconds=LEASE_TTL_S)


def _fail(job: Job, queue: Queue, error: JobError) -> None:
    record_error(job, error)
    end_outside_run(job, queue, "worker lost")
