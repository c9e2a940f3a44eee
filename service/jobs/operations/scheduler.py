"""The rq-scheduler our scheduler process runs: it also recovers abandoned jobs (and
jobs taken but never started) and publishes the ends that a publisher left
half-published (it died midway).

All run here, on every poll, not as a queued job: a queued job would wait for a
free worker slot, and every slot may be busy with long LLM calls. rq-scheduler's lock
means one scheduler acts at a time, however many run.

Periodic jobs (the clean-up) are registered with rq-scheduler at start under fixed ids,
so restarts and extra scheduler processes never add a second copy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job
from rq_scheduler import Scheduler

from service.jobs.operations.recovery import put_back_unstarted_jobs, recover_abandoned_jobs
from service.jobs.push.events import publish_unpublished_ends
from service.jobs.storage.queues import SERIALIZER
from service.jobs.storage.record import JobRecord

log = logging.getLogger(__name__)

CLEANUP_JOB_ID = "llmjobs-cleanup"
CLEANUP_TASK = "service.tasks.maintenance.run_cleanup"
# A queue every default worker serves; low: clean-up never delays a client's job.
CLEANUP_QUEUE = "low"
CLEANUP_TIMEOUT_S = 600


class JSONJob(Job):
    """rq-scheduler creates jobs without a serializer; ours are JSON, never pickle."""

    def __init__(self, id: str | None = None, connection: Any = None, serializer: Any = None):
        super().__init__(id, connection=connection, serializer=serializer or SERIALIZER)


class MaintainingScheduler(Scheduler):
    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("job_class", JSONJob)
        super().__init__(*args, **kwargs)

    def enqueue_jobs(self) -> Iterable[Any]:
        # rq-scheduler's answer (a generator it has run through); its loop does not read it.
        jobs = super().enqueue_jobs()
        recover_abandoned_jobs(self.connection)
        put_back_unstarted_jobs(self.connection)
        publish_unpublished_ends(self.connection)
        return jobs


def register_periodic_jobs(scheduler: Scheduler, *, cleanup_interval_s: int) -> Job:
    """Schedule the clean-up every `cleanup_interval_s`, first run now, under its fixed id.

    rq-scheduler keys its schedule by job id (a sorted set), so scheduling the same id
    twice never makes two entries; but it would overwrite the job's hash, even while a run
    is queued or going. So a matching registration is kept as it is, and only a changed
    one (say, a new interval) is cancelled and made again.
    """
    current = _scheduled(scheduler, CLEANUP_JOB_ID)
    if (
        current is not None
        and current.func_name == CLEANUP_TASK
        and current.origin == CLEANUP_QUEUE
        and JobRecord(current).interval == cleanup_interval_s
    ):
        log.info("periodic job %s already scheduled every %d s", CLEANUP_JOB_ID, cleanup_interval_s)
        return current
    if CLEANUP_JOB_ID in scheduler:
        scheduler.cancel(CLEANUP_JOB_ID)
    job = scheduler.schedule(
        scheduled_time=datetime.now(UTC),
        func=CLEANUP_TASK,
        interval=cleanup_interval_s,
        repeat=None,  # forever
        id=CLEANUP_JOB_ID,
        queue_name=CLEANUP_QUEUE,
        timeout=CLEANUP_TIMEOUT_S,
        # The job's hash is also its schedule: it must never expire. Its results stream
        # is capped by RQ at 10 entries.
        result_ttl=-1,
        description="periodic clean-up of expired jobs' leftovers",
    )
    log.info("scheduled periodic job %s every %d s on queue %s", CLEANUP_JOB_ID, cleanup_interval_s, CLEANUP_QUEUE)
    return job


def _scheduled(scheduler: Scheduler, job_id: str) -> Job | None:
    if job_id not in scheduler:
        return None
    try:
        return scheduler.job_class.fetch(job_id, connection=scheduler.connection)
    except (NoSuchJobError, DeserializationError):  # gone, or not ours to read: made again
        return None
