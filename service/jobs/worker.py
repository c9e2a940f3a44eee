"""The RQ worker our worker processes run: RQ's forking Worker, with heartbeats frequent
enough that a live worker is visible (for /readyz) within 30 s."""

from __future__ import annotations

from typing import Any

from rq import Worker

from service.jobs.queues import SERIALIZER

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
