"""The RQ task: run one LLM job, streaming its text into the job's progress."""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from service.config import load_settings
from service.jobs.progress import ProgressRecorder, record_error, record_result, start_attempt
from service.llm import LLMClient, LLMError, LLMRequest, Stopped, StopToken, cost_usd


def run_llm_job(request: dict[str, Any]) -> dict[str, Any]:
    """Entry point named by `service.jobs.queues.LLM_TASK`; `request` is an LLMRequest as a dict."""
    job = get_current_job()
    settings = load_settings()
    stop = StopToken(deadline=start_attempt(job))
    progress = ProgressRecorder(job, settings.progress_interval_s)
    llm_request = LLMRequest(**request)
    try:
        reply = LLMClient().stream(llm_request, on_text=progress.add, stop=stop)
    except Stopped as exc:
        progress.flush()  # keep the partial text
        record_error(job, _stopped_error(exc, job.meta["timeout_s"]))
        raise
    except LLMError as exc:
        progress.flush()
        record_error(job, exc.as_record())
        raise
    usage = {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens, **reply.extra_usage}
    return record_result(
        job,
        text=reply.text,
        stop_reason=reply.stop_reason,
        usage=usage,
        cost_usd=cost_usd(llm_request.model, reply.input_tokens, reply.output_tokens, settings.price_overrides),
    )


def _stopped_error(exc: Stopped, timeout_s: int) -> dict[str, Any]:
    if exc.reason == "timeout":
        return {"type": "timeout", "message": f"the job did not finish within {timeout_s} s", "retryable": False}
    return {"type": "canceled", "message": "the job was canceled", "retryable": False}
