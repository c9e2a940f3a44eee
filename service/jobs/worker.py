"""The RQ worker our worker processes run: RQ's forking Worker, with heartbeats frequent
enough that a live worker is visible (for /readyz) within 30 s, that publishes the end of
each LLM job once RQ has recorded it."""

from __future__ import annotations

from typing import Any

from rq import Queue, Worker
from rq.job import Job
from rq.registry import StartedJobRegistry

from service.jobs.events import announce_end
from service.jobs.queues import LLM_TASK, SERIALIZER

# An idle worker blocks on its queues for worker_ttl - 15 s, then heartbeats.
WORKER_TTL_S = 20
# A busy worker heartbeats every this many seconds while its job runs.
BUSY_HEARTBEAT_S = 10
# /readyz counts a worker as present only while its last heartbeat is this recent.
HEARTBEAT_FRESH_S = 30


class LLMWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("worker_ttl", WORKER_TTL_S)
        kwargs.setdefault("job_monitoring_interval", BUSY_HEARTBEAT_S)
        kwargs.setdefault("serializer", SERIALIZER)
        super().__init__(*args, **kwargs)

    # The end is published here, after RQ has saved the job's final status, not from RQ's
    # callbacks (they run before): a client told "succeeded" must read "succeeded". The
    # failure handler also runs in the worker when a job process dies, so that is covered.
    # A retryable failure returns RQ's Retry and comes through neither.

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        super().handle_job_success(job, queue, started_job_registry)
        self._publish_end(job)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry=None, exc_string: str = "") -> None:
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)
        self._publish_end(job)

    def _publish_end(self, job: Job) -> None:
        if job.func_name != LLM_TASK:
            return
        # RQ fails a job whose success handling raises: a hiccup here must not turn a
        # result into a failure. Clients polling still see the end, and a stream's
        # safety net publishes it at its next check.
        try:
            job.meta = job.get_meta(refresh=True)  # the job process wrote it, maybe not this one
            announce_end(job)
        except Exception:
            self.log.exception("job %s: could not publish its end", job.id)
