"""The LLM task: run one attempt of an LLM job, streaming its text into the job's progress.

It runs as an asyncio task in the worker (many at once in one process). A failed attempt
that is worth retrying returns RQ's `Retry`, so the job waits in the scheduled registry
(status `queued`) without holding a slot. The job's deadline and a client's cancel stop
the call from outside (the worker cancels the task), even when the provider is silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn, assert_never, cast

from rq import Retry
from rq.job import Job

from service.jobs.running.progress import (
    ProgressRecorder,
    call_counters,
    record_error,
    record_result,
)
from service.jobs.storage.record import JobError, JobRecord, Usage, job_error
from service.llm.client import CallUsage, LLMReply, LLMRequest
from service.llm.errors import LLMError
from service.llm.output import InvalidOutput, parse_output, requested_schema
from service.llm.pricing import cost_usd
from service.tasks.attempts import begin_attempt, until_stopped
from service.tasks.failed_calls import next_move, provider_error, requeue, schedule_retry, timeout_error
from service.tasks.llm_spans import llm_call_span
from service.tasks.outcomes import JobFailed, logged_attempt
from service.tasks.runtime import TaskRuntime


async def run_llm_job(
    job: Job, runtime: TaskRuntime, request: dict[str, Any], betas: list[str] | None = None
) -> Mapping[str, Any] | Retry:
    """Entry point named by `service.jobs.storage.queues.LLM_TASK`; `request` is the Messages
    request as sent (its params), `betas` those that send it to the beta endpoint."""
    return await logged_attempt(job, _attempt(job, LLMRequest(request, tuple(betas or ())), runtime))


async def _attempt(job: Job, request: LLMRequest, runtime: TaskRuntime) -> Mapping[str, Any] | Retry:
    llm = runtime.llm
    assert llm is not None, "LLM jobs are taken only by workers of the LLM queues"
    deadline = await begin_attempt(job, runtime)
    recorder = ProgressRecorder(job)
    usage = CallUsage()

    async def call() -> LLMReply | Retry:
        runtime.progress[job.id] = recorder
        try:
            with llm_call_span(request.model, usage) as note_reply:
                reply = await llm.stream(request, on_delta=recorder.add_delta, usage=usage)
                note_reply(reply)
            return reply
        except LLMError as exc:
            return _after_error(job, exc, runtime, recorder, usage, deadline)
        finally:
            runtime.progress.pop(job.id, None)

    def fail(error: JobError, *, canceled: bool = False) -> NoReturn:
        _fail(job, error, runtime, recorder, usage, canceled=canceled)

    reply = await until_stopped(job, runtime, deadline, call, fail)
    if isinstance(reply, Retry):
        return reply
    return record_reply(job, request, reply, runtime, usage, recorder)


def record_reply(
    job: Job,
    request: LLMRequest,
    reply: LLMReply,
    runtime: TaskRuntime,
    usage: CallUsage,
    recorder: ProgressRecorder | None = None,
) -> Mapping[str, Any]:
    """Complete the job with the provider's reply (a streamed one, or a provider batch's
    result): the Message, its parsed output when structured outputs were asked for (else the
    job fails with `invalid_output`, billed all the same), usage and cost; returns what RQ
    keeps as the job's return value."""
    settings = runtime.settings
    output = None
    if (schema := requested_schema(request.params)) is not None:
        try:
            output = parse_output(reply.text, schema, reply.stop_reason)
        except InvalidOutput as exc:  # billed all the same
            _fail(job, job_error("invalid_output", str(exc)), runtime, recorder, usage)
    tokens = cast("Usage", reply.message["usage"])
    return record_result(
        job,
        message=reply.message,
        text=reply.text,
        output=output,
        usage=tokens,
        cost_usd=cost_usd(request.model, tokens, settings.price_overrides),
        keep_for_s=settings.result_ttl_s,
        usage_retention_days=settings.usage_retention_days,
        recorder=recorder,  # the last text as a progress event, before the result
    )


def _after_error(
    job: Job, error: LLMError, runtime: TaskRuntime, recorder: ProgressRecorder, usage: CallUsage, deadline: float
) -> Retry:
    move = next_move(job, error, runtime, deadline=deadline, billed=usage.billed)
    match move.kind:
        case "requeue":
            requeue(job, error, move.reopens_at)
        case "give_up":
            _fail(job, provider_error(error), runtime, recorder, usage)  # the final failure keeps the last error
        case "past_deadline" | "no_time_to_retry":
            _fail(job, timeout_error(job, last_error=error), runtime, recorder, usage)
        case "retry":
            return schedule_retry(job, error, move.delay_s, counters=_spent(job, usage, runtime), recorder=recorder)
        case _:
            assert_never(move.kind)


def _fail(
    job: Job,
    error: JobError,
    runtime: TaskRuntime,
    recorder: ProgressRecorder | None,
    usage: CallUsage,
    *,
    canceled: bool = False,
) -> NoReturn:
    record_error(job, error, canceled=canceled, counters=_spent(job, usage, runtime), recorder=recorder)
    raise JobFailed(error)


def _spent(job: Job, usage: CallUsage, runtime: TaskRuntime) -> list:
    """The usage of a call that ended without a result, which the provider bills all the same."""
    settings = runtime.settings
    tokens = cast("Usage", usage.as_usage())
    cost = cost_usd(JobRecord(job).model, tokens, settings.price_overrides)
    return call_counters(job, tokens, cost, retention_days=settings.usage_retention_days)
