"""The LLM task: run one attempt of an LLM job, streaming its text into the job's progress.

It runs as an asyncio task in the worker (many at once in one process). A failed attempt
that is worth retrying returns RQ's `Retry`, so the job waits in the scheduled registry
(status `queued`) without holding a slot. The job's deadline and a client's cancel stop
the call from outside (the worker cancels the task), even when the provider is silent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, cast

from rq import Retry
from rq.job import Job

from service.jobs.observability import metrics
from service.jobs.running.progress import (
    ProgressRecorder,
    call_counters,
    record_error,
    record_result,
    record_retry,
    start_attempt,
    undo_attempt,
)
from service.jobs.running.provider_gate import RateLimitHeaders
from service.jobs.running.retry_policy import retry_delay_s, rq_retry
from service.jobs.storage.record import JobError, JobRecord, Usage, job_error
from service.llm import CallUsage, LLMError, LLMRequest, cost_usd, is_priced
from service.tasks.outcomes import JobFailed, Requeue, logged_attempt
from service.tasks.runtime import CANCELED, STOPPED, TaskRuntime

STOP_ERRORS = {
    CANCELED: job_error("canceled", "canceled on request"),
    STOPPED: job_error("stopped", "stopped by an operator"),
}
NO_HEADERS = RateLimitHeaders({}, {})


async def run_llm_job(job: Job, runtime: TaskRuntime, request: dict[str, Any]) -> Mapping[str, Any] | Retry:
    """Entry point named by `service.jobs.storage.queues.LLM_TASK`; `request` is an LLMRequest as a dict."""
    return await logged_attempt(job, _attempt(job, LLMRequest(**request), runtime))


async def _attempt(job: Job, request: LLMRequest, runtime: TaskRuntime) -> Mapping[str, Any] | Retry:
    settings = runtime.settings
    assert runtime.llm is not None, "LLM jobs are taken only by workers of the LLM queues"
    if runtime.gate.closed_here():
        # Admitted while the gate was open, but one of this process's calls has met the
        # provider's limit since: back to the front of the queue, nothing counted.
        raise Requeue("provider gate closed")
    deadline = start_attempt(job, max_attempts=settings.max_attempts)
    recorder = ProgressRecorder(job)
    usage = CallUsage()
    runtime.progress[job.id] = recorder
    try:
        if runtime.stop_reasons.get(job.id) == CANCELED:  # canceled as it was dequeued: no call at all
            raise asyncio.CancelledError
        if time.time() >= deadline:  # it waited out its whole deadline: no call at all
            raise TimeoutError
        async with asyncio.timeout(deadline - time.time()):
            reply = await runtime.llm.stream(request, on_text=recorder.add, usage=usage)
    except TimeoutError:
        _fail(job, timeout_error(job), runtime, recorder, usage)
    except asyncio.CancelledError:
        if (reason := runtime.stop_reasons.get(job.id)) not in STOP_ERRORS:
            raise  # the worker is putting the job back in its queue, or another run won
        _fail(job, STOP_ERRORS[reason], runtime, recorder, usage, canceled=reason == CANCELED)
    except LLMError as exc:
        return _after_error(job, exc, runtime, recorder, usage, deadline)
    finally:
        runtime.progress.pop(job.id, None)
    tokens = {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens, **reply.extra_usage}
    usage_record = cast("Usage", tokens)  # extra_usage: the prompt cache's counts, Usage's optional fields
    return record_result(
        job,
        text=reply.text,
        stop_reason=reply.stop_reason,
        usage=usage_record,
        cost_usd=cost_usd(request.model, reply.input_tokens, reply.output_tokens, settings.price_overrides),
        keep_for_s=settings.result_ttl_s,
        usage_retention_days=settings.usage_retention_days,
        recorder=recorder,  # the last text as a progress event, before the result
    )


def _after_error(
    job: Job, error: LLMError, runtime: TaskRuntime, recorder: ProgressRecorder, usage: CallUsage, deadline: float
) -> Retry:
    settings = runtime.settings
    record = JobRecord(job)
    model = metrics.model_label(record.model, priced=is_priced(record.model, settings.price_overrides))
    metrics.LLM_ERRORS.inc(job.connection, model=model, error_type=error.type)
    reopens_at = report_to_gate(error, runtime)
    if reopens_at is not None and reopens_at >= deadline:
        _fail(job, timeout_error(job, last_error=error), runtime, recorder, usage)
    if reopens_at is not None and not usage.billed:
        # The provider's limit, shared by every process, not this job's fault: back to the
        # front of its queue without using up an attempt; the gate holds it until it reopens.
        undo_attempt(job, provider_error(error), next_attempt_at=reopens_at)
        raise Requeue(error.type)
    attempt = record.attempts
    if not error.retryable or attempt >= record.attempt_limit:
        _fail(job, provider_error(error), runtime, recorder, usage)  # the final failure keeps the last error
    delay = retry_delay_s(
        attempt, base_s=settings.retry_base_s, cap_s=settings.retry_max_s, retry_after_s=error.retry_after_s
    )
    if delay >= deadline - time.time():
        _fail(job, timeout_error(job, last_error=error), runtime, recorder, usage)
    retry, due_at = rq_retry(delay, max_retries=record.attempt_limit)
    record_retry(job, provider_error(error), due_at, counters=_spent(job, usage, runtime), recorder=recorder)
    metrics.JOB_RETRIES.inc(job.connection, queue=job.origin, reason="error")
    return retry


def report_to_gate(error: LLMError, runtime: TaskRuntime) -> float | None:
    """Tell the shared gate what the provider said; for the provider's limit (a 429 that
    waiting lifts, an overload), when the gate reopens."""
    if error.status_code == 429 and error.retryable:  # a spend limit is not retryable
        return runtime.gate.report_rate_limited(error.retry_after_s)
    if error.status_code == 529 or error.type == "overloaded_error":
        return runtime.gate.report_overloaded()
    if error.status_code is not None:
        runtime.gate.report_answer(NO_HEADERS)
    else:  # no answer at all (unreachable, timed out): a probe proved nothing
        runtime.gate.release_probe()
    return None


def _fail(
    job: Job,
    error: JobError,
    runtime: TaskRuntime,
    recorder: ProgressRecorder,
    usage: CallUsage,
    *,
    canceled: bool = False,
) -> None:
    record_error(job, error, canceled=canceled, counters=_spent(job, usage, runtime), recorder=recorder)
    raise JobFailed(error)


def _spent(job: Job, usage: CallUsage, runtime: TaskRuntime) -> list:
    """The usage of a call that ended without a result, which the provider bills all the same."""
    settings = runtime.settings
    cost = cost_usd(JobRecord(job).model, usage.input_tokens, usage.output_tokens, settings.price_overrides)
    return call_counters(
        job, usage.input_tokens, usage.output_tokens, cost, retention_days=settings.usage_retention_days
    )


def timeout_error(job: Job, last_error: LLMError | None = None) -> JobError:
    message = f"the job did not finish within its {JobRecord(job).timeout_s} s deadline"
    if last_error is not None:
        message += f" (last error: {last_error})"
    return job_error("timeout", message)


def provider_error(error: LLMError) -> JobError:
    """A failed call as the job records it: the provider's own error type and message."""
    return {"type": error.type, "message": error.message, "retryable": error.retryable}
