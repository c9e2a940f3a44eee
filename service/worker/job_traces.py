"""A job's run in its caller's trace (service/tracing.py).

RQ's own integrations hook RQ's worker, which this process does not run: the asyncio
worker opens the spans itself, around each run it starts. A job submitted with tracing on
carries its submit's trace context in its record (a webhook delivery, its job's); each run
then adds, in that trace, a `<task> queued` span (from when it became due to when a slot took it)
and a span for the run, current while its task runs: the task's own spans (the LLM call,
a document's steps, the webhook's request) are its children. A job without one (the
periodic clean-up, or a job submitted while tracing was off) is not traced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC

from opentelemetry.trace import SpanKind
from rq.job import Job

from service import tracing
from service.jobs.storage.queues import CLIENT_TASKS
from service.jobs.storage.record import JobRecord


@contextmanager
def traced_run(job: Job, what: str) -> Iterator[None]:
    """Run the block as the span `what` (the task's name) in the job's trace, after its
    `<what> queued` span; nothing when tracing is off or the job carries no trace."""
    if not tracing.ON:
        yield
        return
    record = JobRecord(job)
    carrier = record.trace_context
    # Anything but a dict (a record another tool rewrote) is no trace: the job still runs.
    parent = tracing.context_of(carrier) if isinstance(carrier, dict) else None
    if parent is None:
        yield
        return
    started = time.time_ns()
    attributes = {
        "messaging.system": "rq",
        "messaging.destination.name": job.origin,
        "messaging.message.id": job.id,
        "messaging.operation.type": "process",
    }
    if job.func_name in CLIENT_TASKS:
        attributes |= {"llmjobs.client": record.client, "llmjobs.kind": record.kind}
    queued = tracing.TRACER.start_span(
        f"{what} queued", context=parent, start_time=_due_since_ns(job, record, started), attributes=attributes
    )
    queued.end(end_time=started)
    with tracing.TRACER.start_as_current_span(
        what, context=parent, kind=SpanKind.CONSUMER, start_time=started, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as run:  # fmt: skip
        try:
            yield
        except BaseException as exc:
            tracing.mark_failed(run, type(exc).__name__)
            raise


def _due_since_ns(job: Job, record: JobRecord, now_ns: int) -> int:
    """When the run became due: its enqueue, or the end of its wait for a retry."""
    enqueued = job.enqueued_at
    if enqueued is None:
        return now_ns
    if enqueued.tzinfo is None:  # RQ stores UTC
        enqueued = enqueued.replace(tzinfo=UTC)
    due = max(enqueued.timestamp(), (record.next_attempt_at or 0) if job.func_name in CLIENT_TASKS else 0)
    return min(int(due * 1e9), now_ns)
