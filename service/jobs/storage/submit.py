"""Store and enqueue a new job in one Redis round trip, admitted by its client's limit and
its queue's depth (see admission)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.job import Job
from rq.queue import EnqueueData

from service import tracing
from service.jobs.observability import metrics
from service.jobs.storage import index
from service.jobs.storage.admission import Allowance, Gate, admit
from service.jobs.storage.idempotency import IdempotencyClaim
from service.jobs.storage.ids import new_job_id
from service.jobs.storage.lookup import fetch_job
from service.jobs.storage.queues import BATCH_QUEUE, LLM_TASK
from service.jobs.storage.record import Document, Priority, Step, Tier, new_meta

# RQ's own SIGALRM timeout is a backstop behind the job's deadline, which the task
# enforces itself (and which also closes the provider connection).
RQ_TIMEOUT_GRACE_S = 30


@dataclass(frozen=True)
class NewJob:
    """One job as a client asked for it, validated: the LLM request and our fields around it."""

    priority: Priority
    request: dict[str, Any]  # the Messages request as sent (its params), stored once with the job
    metadata: dict[str, str]
    timeout_s: int
    callback_url: str | None = None
    task: str = LLM_TASK  # the task function's name (service.worker.tasks): a Messages call, or a document's analyses
    document: Document | None = None  # a document job's upload
    steps: list[Step] | None = None  # a document job's steps
    betas: tuple[str, ...] = ()  # a request for the beta Messages endpoint
    reservation_micro_usd: int = 0  # its worst case, for a client with a spend budget
    tier: Tier = "standard"  # batch: sent through the Message Batches API, at half price

    @property
    def queue_name(self) -> str:
        """Its priority's queue; a batch-tier message job waits in the batch queue to be
        collected (a batch-tier document job runs from its priority's queue, each of its
        calls through a provider batch)."""
        return BATCH_QUEUE if self.tier == "batch" and self.task == LLM_TASK else self.priority


@dataclass(frozen=True)
class SubmittedJob:
    job: Job
    created: bool  # False: an earlier request with the same Idempotency-Key created it
    allowance: Allowance | None  # the client's submit limit after this one (None: no limit)


def submit_job(
    connection: Redis,
    queues: dict[str, Queue],
    new: NewJob,
    *,
    gate: Gate,
    max_attempts: int,
    result_ttl_s: int,
    idempotency: IdempotencyClaim | None = None,
    also: Callable[[Pipeline, str], None] | None = None,
) -> SubmittedJob:
    """Create the RQ job (our fields in meta), push it on its priority's queue and index it
    for its client, atomically; `also(pipe, job_id)` adds writes of its own (an upload).
    Raises admission's OverLimit and QueueFull."""
    client = gate.client
    queue = queues[new.queue_name]
    data = prepare_job(new, client=client, max_attempts=max_attempts, result_ttl_s=result_ttl_s)

    def write(pipe: Pipeline) -> Job:
        (job,) = queue.enqueue_many([data], pipeline=pipe)
        index.add(pipe, client, job.id, job.created_at)
        metrics.JOBS_SUBMITTED.inc(pipe, queue=queue.name)
        if also is not None:
            also(pipe, job.id)
        return job

    admitted = admit(
        connection,
        gate,
        hit_id=data.job_id,
        write=write,
        idempotency=idempotency,
        earlier=lambda job_id: fetch_job(connection, job_id),
        reservations=reservations_of([(data.job_id, new)]),
    )
    return SubmittedJob(admitted.created, admitted.new, admitted.allowance)


def reservations_of(jobs: list[tuple[str, NewJob]]) -> list[tuple[str, int]]:
    """(job id, micro-USD) of the (id, job) pairs that reserve against a budget."""
    return [(job_id, new.reservation_micro_usd) for job_id, new in jobs if new.reservation_micro_usd]


def prepare_job(
    new: NewJob, *, client: str, max_attempts: int, result_ttl_s: int, batch_id: str | None = None
) -> EnqueueData:
    """One new job's RQ data (our fields in meta), ready for `queue.enqueue_many`."""
    meta = new_meta(
        client=client, priority=new.priority, model=new.request["model"], metadata=new.metadata,
        timeout_s=new.timeout_s, attempt_limit=max_attempts, callback_url=new.callback_url, batch_id=batch_id,
        document=new.document, steps=new.steps, trace_context=tracing.current_carrier(),
        reservation_micro_usd=new.reservation_micro_usd, tier=new.tier,
    )  # fmt: skip
    return Queue.prepare_data(
        new.task,
        kwargs={"request": new.request, **({"betas": list(new.betas)} if new.betas else {})},
        job_id=new_job_id(),
        timeout=new.timeout_s + RQ_TIMEOUT_GRACE_S,
        result_ttl=result_ttl_s,
        failure_ttl=result_ttl_s,
        meta=meta,
        # Shown in rq-dashboard; the default would be the whole call, prompt included.
        description=f"{new.request['model']} for {client}",
    )
