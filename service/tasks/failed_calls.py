"""What a job does after a failed LLM call, for the message and the document task alike.

The provider's shared limit first (the gate): a call it refused before billing goes back to
the front of its queue without using up an attempt. Then the retry policy: a retryable
error with attempts left is retried after a back-off, if that fits before the job's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NoReturn

from rq import Retry
from rq.job import Job

from service.jobs.observability import budgets, metrics
from service.jobs.observability.counters import HashIncrements
from service.jobs.running.progress import ProgressRecorder, record_error, record_retry, undo_attempt
from service.jobs.running.provider_gate import RateLimitHeaders
from service.jobs.running.retry_policy import retry_delay_s, rq_retry
from service.jobs.storage.record import JobError, JobRecord, job_error
from service.llm.errors import LLMError
from service.llm.pricing import is_priced
from service.tasks.outcomes import JobFailed, Requeue
from service.tasks.runtime import CANCELED, STOPPED, StopReason, TaskRuntime

# The error a job stopped from outside fails with (a superseded run records nothing: the
# run that won did).
STOP_ERRORS: Mapping[StopReason, JobError] = {
    CANCELED: job_error("canceled", "canceled on request"),
    STOPPED: job_error("stopped", "stopped by an operator"),
}
NO_HEADERS = RateLimitHeaders({}, {})
MoveKind = Literal["requeue", "retry", "give_up", "past_deadline", "no_time_to_retry"]


@dataclass(frozen=True)
class NextMove:
    """`requeue`: back to the queue until `reopens_at`, the attempt undone; `retry`: again
    after `delay_s`; `give_up`: final error or no attempts left; `past_deadline`: the gate
    reopens only after the job's deadline; `no_time_to_retry`: the back-off would end after it."""

    kind: MoveKind
    reopens_at: float = 0.0
    delay_s: float = 0.0


def next_move(job: Job, error: LLMError, runtime: TaskRuntime, *, deadline: float, billed: bool) -> NextMove:
    """Count the error, tell the gate, and decide what the job does next."""
    settings, record = runtime.settings, JobRecord(job)
    model = metrics.model_label(record.model, priced=is_priced(record.model, settings.price_overrides))
    metrics.LLM_ERRORS.inc(job.connection, model=model, error_type=error.type)
    reopens_at = report_to_gate(error, runtime)
    if reopens_at is not None and reopens_at >= deadline:
        return NextMove("past_deadline")
    if reopens_at is not None and not billed:
        # The provider's limit, shared by every process, not this job's fault.
        return NextMove("requeue", reopens_at=reopens_at)
    if not error.retryable or record.attempts >= record.attempt_limit:
        return NextMove("give_up")
    delay = retry_delay_s(
        record.attempts, base_s=settings.retry_base_s, cap_s=settings.retry_max_s, retry_after_s=error.retry_after_s
    )
    if delay >= deadline - time.time():
        return NextMove("no_time_to_retry")
    return NextMove("retry", delay_s=delay)


def requeue(job: Job, error: LLMError, reopens_at: float) -> NoReturn:
    """Back to the front of its queue without using up an attempt; the gate holds it until
    it reopens."""
    undo_attempt(job, provider_error(error), next_attempt_at=reopens_at)
    raise Requeue(error.type)


def schedule_retry(
    job: Job,
    error: LLMError,
    delay_s: float,
    *,
    counters: list[HashIncrements],
    recorder: ProgressRecorder | None = None,
) -> Retry:
    """Record the failed attempt and hand RQ the Retry that waits `delay_s` in the scheduled
    registry; a budgeted job reserves its worst case again first, and fails when its
    client's budget has no room left (JobFailed)."""
    if not budgets.reserve_again(job):
        final = budgets.no_room_error(job, f"a retry, after: {error}")
        record_error(job, final, counters=counters, recorder=recorder)
        raise JobFailed(final)
    retry, due_at = rq_retry(delay_s, max_retries=JobRecord(job).attempt_limit)
    record_retry(job, provider_error(error), due_at, counters=counters, recorder=recorder)
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


def timeout_error(job: Job, last_error: LLMError | None = None) -> JobError:
    message = f"the job did not finish within its {JobRecord(job).timeout_s} s deadline"
    if last_error is not None:
        message += f" (last error: {last_error})"
    return job_error("timeout", message)


def provider_error(error: LLMError) -> JobError:
    """A failed call as the job records it: the provider's own error type and message."""
    return {"type": error.type, "message": error.message, "retryable": error.retryable}
