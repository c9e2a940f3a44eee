"""The RQ task: run one attempt of an LLM job, streaming its text into the job's progress.

A failed attempt that is worth retrying returns RQ's `Retry`, so the job waits in the
scheduled registry (status `queued`) without holding a worker slot.
"""

from __future__ import annotations

import logging
from typing import Any

from rq import Retry, get_current_job
from rq.job import Job
from rq.utils import now

from service.config import Settings, load_settings
from service.jobs import metrics
from service.jobs.control import supervised
from service.jobs.progress import (
    ProgressRecorder,
    Superseded,
    record_error,
    record_result,
    record_retry,
    start_attempt,
)
from service.jobs.resource import job_result
from service.jobs.retry_policy import retry_delay_s, rq_retry
from service.llm import LLMClient, LLMError, LLMRequest, Stopped, StopToken, cost_usd, is_priced
from service.logs import log_context

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """The job failed for good; the error a client sees is in its meta."""


def run_llm_job(request: dict[str, Any]) -> dict[str, Any] | Retry | None:
    """Entry point named by `service.jobs.queues.LLM_TASK`; `request` is an LLMRequest as a dict."""
    job = get_current_job()
    context = {"job_id": job.id, "client": job.meta.get("client"), "queue": job.origin}
    with log_context(**context, attempt=job.meta.get("attempts", 0) + 1):
        try:
            outcome = _attempt(job, LLMRequest(**request), load_settings())
        except Superseded:
            # Another run of this job (re-queued while this one looked lost) finished first.
            log.info("attempt ended", extra={"outcome": "superseded"})
            return job_result(job)
        except JobFailed as exc:
            log.info("attempt ended", extra={"outcome": "failed", "error_type": job.meta["error"]["type"]})
            raise JobFailed(str(exc)) from exc
        retrying = isinstance(outcome, Retry)
        log.info("attempt ended", extra={"outcome": "retrying" if retrying else "succeeded"})
        return outcome


def _attempt(job: Job, request: LLMRequest, settings: Settings) -> dict[str, Any] | Retry:
    stop = StopToken(deadline=start_attempt(job, max_attempts=settings.max_attempts))
    metrics.QUEUE_WAIT.observe(job.connection, (now() - job.enqueued_at).total_seconds(), queue=job.origin)
    progress = ProgressRecorder(job, settings.progress_interval_s)
    try:
        with supervised(job.connection, job.id, on_cancel=stop.cancel):
            llm = LLMClient(read_timeout_s=settings.llm_read_timeout_s)
            reply = llm.stream(request, on_text=progress.add, stop=stop)
    except Stopped as exc:
        progress.flush()  # keep the partial text
        if exc.reason == "canceled":
            record_error(job, {"type": "canceled", "message": "canceled on request", "retryable": False}, canceled=True)
        else:
            record_error(job, _timeout_error(job))
        raise JobFailed(exc.reason) from exc
    except LLMError as exc:
        progress.flush()
        return _retry_or_fail(job, exc, settings, stop)
    progress.flush()  # the last text as a progress event, before the result
    usage = {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens, **reply.extra_usage}
    return record_result(
        job,
        text=reply.text,
        stop_reason=reply.stop_reason,
        usage=usage,
        cost_usd=cost_usd(request.model, reply.input_tokens, reply.output_tokens, settings.price_overrides),
        keep_for_s=settings.result_ttl_s,
        usage_retention_days=settings.usage_retention_days,
    )


def _retry_or_fail(job: Job, error: LLMError, settings: Settings, stop: StopToken) -> Retry:
    model = metrics.model_label(job.meta["model"], priced=is_priced(job.meta["model"], settings.price_overrides))
    metrics.LLM_ERRORS.inc(job.connection, model=model, error_type=error.type)
    attempt = job.meta["attempts"]
    if not error.retryable or attempt >= job.meta["attempt_limit"]:
        record_error(job, error.as_record())  # the final failure keeps the last error
        raise JobFailed(str(error)) from error
    delay = retry_delay_s(
        attempt, base_s=settings.retry_base_s, cap_s=settings.retry_max_s, retry_after_s=error.retry_after_s
    )
    if delay >= stop.remaining_s():
        record_error(job, _timeout_error(job, last_error=error))
        raise JobFailed("timeout") from error
    retry, due_at = rq_retry(delay, max_retries=job.meta["attempt_limit"])
    record_retry(job, error.as_record(), next_attempt_at=due_at)
    metrics.JOB_RETRIES.inc(job.connection, queue=job.origin, reason="error")
    return retry


def _timeout_error(job: Job, last_error: LLMError | None = None) -> dict[str, Any]:
    message = f"the job did not finish within its {job.meta['timeout_s']} s deadline"
    if last_error is not None:
        message += f" (last error: {last_error})"
    return {"type": "timeout", "message": message, "retryable": False}
