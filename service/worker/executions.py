"""RQ's bookkeeping for the many jobs one worker process runs at once.

RQ 2.12's Worker tracks one execution at a time (`worker.execution`), so the asyncio
worker keeps one `Running` record per job and writes what RQ's own worker would: an
Execution in the StartedJobRegistry with its heartbeat, the job's status and times, and
at the end its Result, registry and TTL, through the same Job methods RQ calls. So
rq-dashboard and `rq info` show every running job, and RQ's registries stay consistent.

Every write here is batched: one pipeline starts all the jobs one dequeue took, one
pipeline heartbeats all running jobs, one transaction ends a job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.defaults import DEFAULT_RESULT_TTL
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import now, utcformat
from rq.worker import Worker, WorkerStatus

from service.jobs.observability import budgets
from service.jobs.push.events import claim_end
from service.jobs.storage import claims
from service.jobs.storage.keys import LEASE_TTL_S, lease_key
from service.jobs.storage.record import JobRecord

# A running job's entry in the started registry (and its Execution) lives this long past
# its last heartbeat; RQ's own worker uses its heartbeat interval + 60 s.
EXECUTION_TTL_S = 90


@dataclass
class Running:
    job: Job
    queue: Queue
    execution: Execution
    task: asyncio.Task | None = field(default=None, repr=False)


def start_executions(
    connection: Redis, worker: Worker, queued: Iterable[tuple[Job, Queue]], *, claimed: list[str]
) -> list[Running]:
    """Mark the jobs started, as RQ's worker does before it runs one, in one round trip; a
    lease per job tells the scheduler's recovery that a live process is running it. The
    claims of the take (`claimed`, started or not) end in the same transaction."""
    running = []
    with connection.pipeline() as pipe:
        claims.release(pipe, claimed)
        for job, queue in queued:
            execution = Execution.create(job, EXECUTION_TTL_S, pipeline=pipe, worker_name=worker.name)
            job.prepare_for_execution(worker.name, pipe)
            pipe.set(lease_key(job.id), 1, ex=LEASE_TTL_S)
            running.append(Running(job, queue, execution))
        if running:  # RQ's worker hash holds one current job: the latest, for rq-dashboard and `rq info`
            worker.set_current_job_id(running[-1].job.id, pipeline=pipe)
            worker.set_state(WorkerStatus.BUSY, pipeline=pipe)
        pipe.execute()
    return running


def heartbeat(pipe: Pipeline, running: Iterable[Running]) -> None:
    """Renew every running job's execution, started-registry entry and lease (queued on
    the caller's pipeline: one round trip per tick for all of them)."""
    moment = now()
    for entry in running:
        entry.execution.heartbeat(entry.job.started_job_registry, EXECUTION_TTL_S, pipe)
        pipe.hset(entry.job.key, "last_heartbeat", utcformat(moment))
        pipe.set(lease_key(entry.job.id), 1, ex=LEASE_TTL_S)


def _ended(entry: Running, pipe: Pipeline) -> None:
    """What every end shares: the execution is over and the lease goes with it (in the same
    transaction, so recovery never sees the job started without a lease)."""
    entry.job.ended_at = now()
    entry.execution.delete(job=entry.job, pipeline=pipe)
    pipe.delete(lease_key(entry.job.id))


def _record_end(pipe: Pipeline, job: Job, publishes_end: bool) -> bool:
    """Send the end's transaction, with the release of the run's budget reservation (what
    its calls cost is counted already) and the claim of its announcement last when it is to
    be published; returns the claim (False when there is none)."""
    budgets.release(pipe, job)
    if publishes_end:
        claim_end(pipe, job)
    replies = pipe.execute()
    return publishes_end and bool(replies[-1])


def _result_times(entry: Running) -> dict:
    return {
        "execution_id": entry.execution.id,
        "execution_started_at": entry.execution.created_at,
        "execution_ended_at": entry.job.ended_at,
    }


def finish_succeeded(entry: Running, worker_name: str, return_value: object, *, publishes_end: bool) -> bool:
    """RQ's success handling; `publishes_end`: the job's end is to be published (a job a
    client submitted), claimed in the same transaction so it is published at least once.
    Returns the claim, for `announce_end`."""
    job = entry.job
    job._result = return_value
    result_ttl = job.get_result_ttl(DEFAULT_RESULT_TTL)
    with job.connection.pipeline() as pipe:
        _ended(entry, pipe)
        job._handle_success(result_ttl, pipeline=pipe, worker_name=worker_name, **_result_times(entry))
        job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
        return _record_end(pipe, job, publishes_end)


def finish_failed(
    entry: Running, worker_name: str, exc_string: str, *, stopped: bool = False, publishes_end: bool = False
) -> bool:
    """The job failed for good: `exc_string` is what the failed registry and rq-dashboard
    show (the error a client sees, or a traceback for a bug in the service). Returns the
    claim of its end, as `finish_succeeded` does."""
    job = entry.job
    with job.connection.pipeline() as pipe:
        _ended(entry, pipe)
        job.set_status(JobStatus.STOPPED if stopped else JobStatus.FAILED, pipeline=pipe)
        job._handle_failure(exc_string, pipeline=pipe, worker_name=worker_name, **_result_times(entry))
        return _record_end(pipe, job, publishes_end)


def finish_retry(entry: Running, worker_name: str, retry: Retry) -> None:
    """The task asked for another attempt later: the job waits in the scheduled registry."""
    job = entry.job
    if job.number_of_retries and job.number_of_retries >= retry.max:
        # RQ's own worker stores this as a failure; our tasks never ask past their budget.
        finish_failed(entry, worker_name, "retries exhausted")
        return
    with job.connection.pipeline() as pipe:
        _ended(entry, pipe)
        job._handle_retry_result(
            queue=entry.queue, pipeline=pipe, retry=retry, worker_name=worker_name, **_result_times(entry)
        )
        pipe.execute()


def finish_superseded(entry: Running) -> None:
    """Another run of the job completed it first, and recorded its end: only this
    execution is over. Should this run have marked the job started after the winner
    ended it (a narrow race), the winner's end is restored from the record it kept."""
    job = entry.job
    with job.connection.pipeline() as pipe:
        _ended(entry, pipe)
        pipe.execute()
    if job.get_status(refresh=True) == JobStatus.STARTED:
        job.set_status(JobStatus.FINISHED if JobRecord(job).result else JobStatus.FAILED)


def put_back(entry: Running) -> None:
    """Return the job to the front of its queue as it was before it started (the provider
    held it back, or the worker is shutting down)."""
    job = entry.job
    with job.connection.pipeline() as pipe:
        _ended(entry, pipe)
        pipe.hdel(job.key, "started_at", "worker_name")
        job.started_at = None
        entry.queue._enqueue_job(job, pipeline=pipe, at_front=True)
        pipe.execute()
