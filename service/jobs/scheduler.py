"""The rq-scheduler our scheduler process runs: it also recovers abandoned jobs.

Recovery runs here, on every poll, not as a queued job: a queued job would wait for a
free worker slot, and every slot may be busy with long LLM calls. rq-scheduler's lock
means one scheduler acts at a time, however many run.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job
from rq_scheduler import Scheduler

from service.jobs.queues import SERIALIZER
from service.jobs.recovery import recover_abandoned_jobs


class JSONJob(Job):
    """rq-scheduler creates jobs without a serializer; ours are JSON, never pickle."""

    def __init__(self, id: str | None = None, connection: Any = None, serializer: Any = None):
        super().__init__(id, connection=connection, serializer=serializer or SERIALIZER)


class MaintainingScheduler(Scheduler):
    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("job_class", JSONJob)
        super().__init__(*args, **kwargs)

    def enqueue_jobs(self) -> list[Job]:
        jobs = super().enqueue_jobs()
        recover_abandoned_jobs(self.connection)
        return jobs
