"""The frame of one attempt of a job that calls the provider, for the message and the document
task alike: the provider gate, the attempt counted, then the task's own work within the job's
deadline, stopped from outside by a cancel or an operator.

Beside `outcomes.py`, not in it: it turns a stop into the job's error (`failed_calls`), and
`failed_calls` itself raises `outcomes`' exceptions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, Protocol, TypeVar, assert_never

from rq.job import Job

from service.jobs.running.progress import start_attempt
from service.jobs.storage.record import JobError
from service.tasks.failed_calls import STOP_ERRORS, timeout_error
from service.tasks.outcomes import pass_gate
from service.tasks.runtime import CANCELED, TaskRuntime

T = TypeVar("T")


class Fail(Protocol):
    """Record the job's error and raise JobFailed (`canceled`: its client asked)."""

    def __call__(self, error: JobError, *, canceled: bool = False) -> NoReturn: ...


async def begin_attempt(job: Job, runtime: TaskRuntime) -> float:
    """Pass the provider gate (or go back to the queue: Requeue), then count the attempt;
    returns the job's deadline (epoch s)."""
    await pass_gate(runtime.gate)
    return start_attempt(job, max_attempts=runtime.settings.max_attempts)


async def until_stopped(
    job: Job, runtime: TaskRuntime, deadline: float, work: Callable[[], Awaitable[T]], fail: Fail
) -> T:
    """Run `work` until the job's deadline (then it fails with `timeout`) or until the
    worker cancels it: a client's cancel or an operator's stop fails the job with that
    error; any other cancel (the worker putting the job back in its queue, or another run
    that won) goes on up. A job canceled as it was dequeued, or dequeued past its deadline,
    makes no call at all."""
    try:
        if runtime.stop_reasons.get(job.id) == CANCELED:
            raise asyncio.CancelledError
        if time.time() >= deadline:
            raise TimeoutError
        async with asyncio.timeout(deadline - time.time()):
            return await work()
    except TimeoutError:
        fail(timeout_error(job))
    except asyncio.CancelledError:
        match reason := runtime.stop_reasons.get(job.id):
            case None | "superseded":
                raise
            case "canceled" | "stopped":
                fail(STOP_ERRORS[reason], canceled=reason == CANCELED)
            case _:
                assert_never(reason)
