"""The public job resource: built here and nowhere else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

from rq.job import Job

from service.jobs.storage.status import (
    FAILED,
    QUEUED,
    SUCCEEDED,
    TERMINAL_STATUSES,
    has_unreadable_record,
    public_status,
)

# Shown when a job failed without recording why (e.g. a crash outside the LLM call);
# the traceback stays with the operators in rq-dashboard.
UNEXPECTED_FAILURE = {"type": "internal_error", "message": "the job failed unexpectedly", "retryable": False}
UNREADABLE_RECORD = {
    "type": "unreadable_record",
    "message": "the job's record was rewritten by a tool that does not use this service's JSON serializer "
    "(RQ's own commands need --serializer rq.serializers.JSONSerializer); its details cannot be read",
    "retryable": False,
}


MESSAGE, DOCUMENT = "message", "document"  # a job's kind: one Messages call, or a document's analyses


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_resource(job: Job) -> dict[str, Any]:
    unreadable = has_unreadable_record(job)
    meta = {} if unreadable else job.meta
    status = public_status(job)
    error = UNREADABLE_RECORD if unreadable else meta.get("error") or (UNEXPECTED_FAILURE if status == FAILED else None)
    next_attempt_at = meta.get("next_attempt_at") if status == QUEUED else None
    resource = {
        "id": job.id,
        "kind": meta.get("kind", MESSAGE),
        "status": status,
        "priority": meta.get("priority"),
        "model": meta.get("model"),
        "progress": {"output_tokens": meta.get("output_tokens", 0), "text": meta.get("text", "")},
        "result": job_result(job) if status == SUCCEEDED else None,
        "error": error if status != SUCCEEDED else None,
        "attempts": meta.get("attempts", 0),
        "next_attempt_at": iso_timestamp(datetime.fromtimestamp(next_attempt_at, UTC)) if next_attempt_at else None,
        "created_at": iso_timestamp(job.created_at),
        "started_at": iso_timestamp(job.started_at),
        "finished_at": iso_timestamp(job.ended_at) if status in TERMINAL_STATUSES else None,
        "metadata": meta.get("metadata", {}),
        "webhook": webhook_view(meta.get("webhook")),
        "links": {"self": job_path(job.id)},
    }
    if resource["kind"] == DOCUMENT:
        # How far its steps are, and what was uploaded.
        resource["progress"]["percent"] = meta.get("percent", 0)
        resource["document"] = meta.get("document")
        resource["steps"] = meta.get("steps", [])
    return resource


def job_result(job: Job) -> dict[str, Any] | None:
    """The completed reply: text, stop_reason, usage, cost_usd; for a document job its
    analyses, usage and cost_usd (also RQ's return value)."""
    result = job.meta.get("result")
    if not result or job.meta.get("kind") == DOCUMENT:
        return result  # a document job's result: its analyses and their totals
    return {"text": job.meta.get("text", ""), **result}


def webhook_view(state: dict[str, Any] | None) -> dict[str, Any] | None:
    if state is None:
        return None
    due = state.get("next_attempt_at")
    return {**state, "next_attempt_at": iso_timestamp(datetime.fromtimestamp(due, UTC)) if due else None}


@overload
def iso_timestamp(moment: datetime) -> str: ...
@overload
def iso_timestamp(moment: datetime | None) -> str | None: ...
def iso_timestamp(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None
