"""The public job resource: built here and nowhere else."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, overload

from rq.job import Job

from service.jobs.storage.record import (
    DOCUMENT,
    JobRecord,
    WebhookState,
    has_unreadable_record,
    job_error,
)
from service.jobs.storage.status import FAILED, QUEUED, RUNNING, SUCCEEDED, TERMINAL_STATUSES, public_status

# Shown when a job failed without recording why (e.g. a crash outside the LLM call);
# the traceback stays with the operators in rq-dashboard.
UNEXPECTED_FAILURE = job_error("internal_error", "the job failed unexpectedly")
UNREADABLE_RECORD = job_error(
    "unreadable_record",
    "the job's record was rewritten by a tool that does not use this service's JSON serializer "
    "(RQ's own commands need --serializer rq.serializers.JSONSerializer); its details cannot be read",
)


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_resource(job: Job) -> dict[str, Any]:
    unreadable = has_unreadable_record(job)  # its fields are gone: each reads as its default
    record = JobRecord(job)
    status = public_status(job)
    error = UNREADABLE_RECORD if unreadable else record.error or (UNEXPECTED_FAILURE if status == FAILED else None)
    next_attempt_at = record.next_attempt_at if status == QUEUED else None
    resource: dict[str, Any] = {
        "id": job.id,
        "kind": record.kind,
        "status": status,
        "priority": None if unreadable else record.priority,
        "tier": record.tier,
        "model": None if unreadable else record.model,
        "progress": {"output_tokens": record.output_tokens, "text": record.text},
        "result": job_result(job) if status == SUCCEEDED else None,
        "error": error if status != SUCCEEDED else None,
        "attempts": record.attempts,
        "next_attempt_at": iso_timestamp(datetime.fromtimestamp(next_attempt_at, UTC)) if next_attempt_at else None,
        "created_at": iso_timestamp(job.created_at),
        "started_at": iso_timestamp(job.started_at),
        "finished_at": iso_timestamp(job.ended_at) if status in TERMINAL_STATUSES else None,
        "metadata": record.metadata,
        "webhook": webhook_view(record.webhook),
        "provider_batch": record.provider_batch if status == RUNNING else None,
        "links": {"self": job_path(job.id)},
    }
    if record.kind == DOCUMENT:
        # How far its steps are, and what was uploaded.
        resource["progress"]["percent"] = record.percent
        resource["document"] = record.document
        resource["steps"] = record.steps
    return resource


def job_result(job: Job) -> Mapping[str, Any] | None:
    """The completed reply: text, stop_reason, usage, cost_usd; for a document job its
    analyses, usage and cost_usd (also RQ's return value)."""
    record = JobRecord(job)
    result = record.result
    if not result or record.kind == DOCUMENT:
        return result  # a document job's result: its analyses and their totals
    return {"text": record.text, **result}


def webhook_view(state: WebhookState | None) -> dict[str, Any] | None:
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
