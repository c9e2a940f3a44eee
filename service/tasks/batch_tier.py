"""What a batch-tier job does around its provider batch: the request it sends, being sent,
and its result read into it.

A job's result ends it by the same code a streamed reply does (`llm_job.record_reply`:
the Message, structured output, usage, cost at the batch price since its usage says
`service_tier: "batch"`); a final error fails it with the provider's error; a retryable
error, an expired or a canceled request goes back to the batch queue for a later provider
batch while attempts remain. Each provider batch a job goes into counts as an attempt.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, cast

from redis import WatchError
from rq import Queue
from rq.defaults import DEFAULT_RESULT_TTL
from rq.job import Job, JobStatus
from rq.utils import now, utcformat

from service.jobs.observability import metrics
from service.jobs.observability.counters import HashIncrements
from service.jobs.running import provider_batches
from service.jobs.running.progress import call_counters, record_error
from service.jobs.running.transitions import end_in_provider_batch
from service.jobs.storage import scripts
from service.jobs.storage.keys import billed_key
from service.jobs.storage.record import JobRecord, ProviderBatchRef, Usage
from service.jobs.storage.status import TERMINAL_STATUSES, public_status
from service.llm.batches import BatchResult, ProviderBatch
from service.llm.client import CallUsage, LLMReply, LLMRequest
from service.llm.errors import LLMError
from service.llm.pricing import cost_usd, is_priced
from service.tasks.failed_calls import provider_error, timeout_error
from service.tasks.llm_job import record_reply
from service.tasks.outcomes import JobFailed
from service.tasks.runtime import TaskRuntime

MARK_CHUNK = 500  # jobs per MARK_SENT call
# Why a provider batch's result was not read into its job (llmjobs_batch_results_dropped_total).
DropReason = Literal["ended", "elsewhere", "unknown"]


def provider_request(job: Job) -> dict[str, Any]:
    """The job's line of a provider batch: its id and its Messages request, whole."""
    return {"custom_id": job.id, "params": job.kwargs["request"]}


def is_waiting(job: Job | None) -> bool:
    """Still queued (not canceled, not deleted): it may be sent."""
    return job is not None and job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.SCHEDULED)


def mark_sent(jobs: Sequence[Job], batch: ProviderBatch) -> float:
    """The jobs are in the provider batch: each counts an attempt, fixes its deadline at its
    first, and shows `running` with `provider_batch`; only those still queued (a cancel may
    have won). Returns the earliest of their deadlines (epoch s; inf for none)."""
    if not jobs:
        return math.inf
    ref: ProviderBatchRef = {"id": batch.id, "submitted_at": _iso(batch.created_at)}
    started_at = utcformat(now())
    connection = jobs[0].connection
    with connection.pipeline(transaction=False) as pipe:
        for start in range(0, len(jobs), MARK_CHUNK):
            chunk = jobs[start : start + MARK_CHUNK]
            metas = [job.serializer.dumps(_sent_meta(job, ref)) for job in chunk]
            scripts.add_to_pipeline(pipe, scripts.MARK_SENT, [job.key for job in chunk], [started_at, *metas])
        pipe.execute()
    return min(JobRecord(job).deadline_at or math.inf for job in jobs)


def _sent_meta(job: Job, ref: ProviderBatchRef) -> dict[str, Any]:
    record = JobRecord(job)
    record.attempts += 1
    if record.deadline_at is None:
        record.deadline_at = time.time() + record.timeout_s
    record.provider_batch = ref
    record.next_attempt_at = None
    return job.meta


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def in_batch(job: Job, provider_id: str) -> bool:
    """The job is running in this provider batch (not ended, not sent again elsewhere)."""
    batch = JobRecord(job).provider_batch
    return job.get_status(refresh=False) == JobStatus.STARTED and batch is not None and batch["id"] == provider_id


def record_outcome(job: Job, result: BatchResult, runtime: TaskRuntime, batch_queue: Queue) -> Mapping[str, Any] | None:
    """Read the job's result into it: its return value when it succeeded, None when it went
    back to the batch queue; raises JobFailed when it failed (and Superseded when another
    run completed it first)."""
    if result.message is not None:
        usage = CallUsage(reported=cast("dict[str, Any]", result.message.get("usage") or {}), counted=True)
        return record_reply(job, LLMRequest(job.kwargs["request"]), LLMReply(result.message), runtime, usage)
    error = result.error
    assert error is not None
    record = JobRecord(job)
    model = metrics.model_label(record.model, priced=is_priced(record.model, runtime.settings.price_overrides))
    metrics.LLM_ERRORS.inc(job.connection, model=model, error_type=error.type)
    if error.retryable and record.attempts < record.attempt_limit:
        if time.time() < (record.deadline_at or 0):
            send_again(job, error, batch_queue)
            return None
        final = timeout_error(job, last_error=error)
    else:
        final = provider_error(error)
    record_error(job, final)
    raise JobFailed(final)


def send_again(job: Job, error: LLMError, batch_queue: Queue) -> None:
    """Back to the batch queue for a later provider batch, the error shown meanwhile; only
    if it is still in the batch it was in (a result read twice sends it once)."""
    record = JobRecord(job)
    batch = record.provider_batch
    with job.connection.pipeline() as pipe:
        try:
            pipe.watch(job.key)
            job.refresh()
            if batch is None or not in_batch(job, batch["id"]):
                return
            record.error, record.provider_batch = provider_error(error), None
            pipe.multi()
            batch_queue.enqueue_job(job, pipeline=pipe)  # saves the job, meta included, status queued
            metrics.JOB_RETRIES.inc(pipe, queue=batch_queue.name, reason="error")
            pipe.execute()
        except WatchError:
            return  # it changed meanwhile (a cancel): it is not sent again


def end_past_deadline(jobs: Sequence[Job | None], provider_id: str) -> float:
    """End each job of the provider batch whose deadline has passed (`timeout`; its result
    is dropped when it comes); returns the earliest deadline of those left (inf: none)."""
    now_s, earliest = time.time(), math.inf
    for job in jobs:
        if job is None or not in_batch(job, provider_id):
            continue
        deadline = JobRecord(job).deadline_at or math.inf
        if deadline > now_s or not end_in_provider_batch(job, timeout_error(job)):
            earliest = min(earliest, deadline)
    return earliest


def drop_result(job: Job, result: BatchResult, provider_id: str, runtime: TaskRuntime) -> DropReason:
    """A result (from provider batch `provider_id`) for a job not running in the batch it
    came from: dropped. If the job ended without a result (canceled, timed out), what the
    provider billed for it counts in its client's usage and the metrics, once per provider
    batch (a result read again, after a worker died while fanning out, is not counted
    again); a job that has its result is counted once, by it. Returns why it was dropped."""
    if public_status(job) not in TERMINAL_STATUSES:
        return "elsewhere"  # sent again since (the batch it is in now answers for it)
    record = JobRecord(job)
    if result.message is not None and record.result is None:
        usage = cast("Usage", result.message.get("usage") or {})
        cost = cost_usd(record.model, usage, runtime.settings.price_overrides)
        counters = call_counters(job, usage, cost, retention_days=runtime.settings.usage_retention_days)
        _add_counters_once(job, provider_id, counters)
    return "ended"


def _add_counters_once(job: Job, provider_id: str, counters: list[HashIncrements]) -> None:
    key = billed_key(job.id)
    with job.connection.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.sismember(key, provider_id):
                return
            pipe.multi()
            pipe.sadd(key, provider_id)
            pipe.expire(key, job.get_result_ttl(DEFAULT_RESULT_TTL))
            for counter in counters:
                counter.add_to(pipe)
            pipe.execute()
        except WatchError:
            return  # another worker counted it meanwhile


# --- a batch-tier document job's calls ------------------------------------------------------

CALL_POLL_S = 1.0  # how often a document job's run looks for its call's result


def call_answer(result: BatchResult) -> dict[str, Any]:
    """A document call's result as its run reads it back (`call_in_provider_batch`)."""
    if result.message is not None:
        return {"message": result.message}
    assert result.error is not None
    error = result.error
    return {"error": {"type": error.type, "message": error.message, "retryable": error.retryable}}


async def call_in_provider_batch(job: Job, request: LLMRequest, usage: CallUsage) -> LLMReply:
    """One call of a batch-tier document job, through a provider batch: queued for the next
    one, then waited for (the run keeps its slot and its lease meanwhile; canceled or past
    its deadline, the call is dropped). Raises `LLMError` as a streamed call would."""
    connection = job.connection
    ttl_s = max(1, int((JobRecord(job).deadline_at or time.time()) - time.time())) + 3600
    call_id = provider_batches.queue_call(connection, job.id, request.params, ttl_s)
    try:
        while (answer := provider_batches.call_answer(connection, call_id)) is None:
            await asyncio.sleep(CALL_POLL_S)
    finally:
        provider_batches.drop_call(connection, call_id)
    if "error" in answer:
        raise LLMError(answer["error"]["type"], answer["error"]["message"], retryable=answer["error"]["retryable"])
    message = answer["message"]
    usage.reported, usage.counted = dict(message.get("usage") or {}), True
    return LLMReply(message)
