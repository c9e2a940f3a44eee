"""How a task tells the worker that its job did not simply succeed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from rq import Retry
from rq.job import Job

from service import tracing
from service.jobs.running.progress import RunRefused, Superseded
from service.jobs.running.provider_gate import MIN_WAIT_S, ProviderGate
from service.jobs.storage.record import JobError, JobRecord
from service.logs import log_context

log = logging.getLogger(__name__)
T = TypeVar("T")


class JobFailed(Exception):
    """The job failed for good, as expected (the provider refused, the deadline passed, a
    cancel): the worker stores its error, not a traceback, which is kept for real bugs."""

    def __init__(self, error: JobError):
        super().__init__(f"{error['type']}: {error['message']}")
        self.error = error


class Requeue(Exception):
    """Put the job back at the front of its queue, as it was: it never really ran."""


async def pass_gate(gate: ProviderGate) -> None:
    """Before a job's first call. This process may have closed the gate since it admitted
    the job (it runs many; another call met the limit): then the job goes back to its queue
    (Requeue) rather than hold a slot, unless the hold is shorter than a dequeue pause (a
    low budget refilling), which it waits out here."""
    hold = gate.closed_here_for()
    if hold >= MIN_WAIT_S:
        raise Requeue("provider gate closed")
    if hold:
        await asyncio.sleep(hold)


async def logged_attempt(job: Job, attempt: Awaitable[T]) -> T:
    """Await a task's attempt in the job's log context, logging how it ended (and saying so
    on its run's span)."""
    record = JobRecord(job)
    number = record.attempts + 1
    context = {"job_id": job.id, "client": record.client, "queue": job.origin}
    with log_context(**context, attempt=number):
        try:
            outcome = await attempt
        except Superseded:
            # Another run of this job (re-queued while this one looked lost) finished first
            # and recorded the end: the worker closes only this run's execution.
            _ended(number, "superseded")
            raise
        except JobFailed as exc:
            _ended(number, "failed", exc.error["type"])
            raise
        except RunRefused as exc:
            _ended(number, "failed", exc.error["type"])
            raise JobFailed(exc.error) from None
        except Requeue:
            _ended(number, "held_back")
            raise
        _ended(number, "retrying" if isinstance(outcome, Retry) else "succeeded")
        return outcome


def _ended(attempt: int, outcome: str, error_type: str | None = None) -> None:
    extra = {"outcome": outcome} if error_type is None else {"outcome": outcome, "error_type": error_type}
    log.info("attempt ended", extra=extra)
    tracing.annotate({"llmjobs.attempt": attempt, "llmjobs.outcome": outcome}, error_type=error_type)
