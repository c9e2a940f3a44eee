"""The periodic clean-up that the scheduler enqueues (see service.jobs.operations.scheduler)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from rq.job import Job

from service.config import load_settings
from service.jobs.operations import cleanup
from service.jobs.storage.keys import MAINTENANCE_LOCK_KEY, MAINTENANCE_RECENT_KEY, MAINTENANCE_RUNS_KEY

log = logging.getLogger(__name__)

# Totals and the last runs are kept for operators (and tests) to see that it runs; a run
# still going when the next is due (a huge keyspace) holds a lock that makes the next skip.
RECENT_KEPT = 100


def run_cleanup(job: Job) -> dict[str, Any]:
    """Prune indexes and orphan keys, fill in lost TTLs, clean RQ's registries, release the
    budget reservations of jobs that are gone (`job` is
    this run's own RQ job, which rq-scheduler enqueued)."""
    connection = job.connection
    settings = load_settings()
    lock_ttl = int(job.timeout or 600)
    token = uuid.uuid4().hex
    if not connection.set(MAINTENANCE_LOCK_KEY, token, nx=True, ex=lock_ttl):
        log.info("clean-up skipped: the previous run is still going")
        return {"skipped": True}
    started = time.time()
    try:
        counts: dict[str, Any] = {"index_entries": cleanup.prune_client_indexes(connection)}
        counts.update(
            cleanup.prune_orphan_job_keys(
                connection,
                idempotency_ttl_s=settings.idempotency_ttl_s,
                usage_retention_days=settings.usage_retention_days,
            )
        )
        counts["registry_entries"] = cleanup.clean_rq_registries(connection)
        counts["budget_reservations"] = cleanup.release_lost_reservations(connection)
    finally:
        if connection.get(MAINTENANCE_LOCK_KEY) == token.encode():  # not another run's, had ours lapsed
            connection.delete(MAINTENANCE_LOCK_KEY)
    enqueued_at = job.enqueued_at.timestamp() if job.enqueued_at else None
    record = {"enqueued_at": enqueued_at, "started_at": started, "seconds": round(time.time() - started, 3), **counts}
    with connection.pipeline() as pipe:
        pipe.hincrby(MAINTENANCE_RUNS_KEY, "runs", 1)
        pipe.hset(MAINTENANCE_RUNS_KEY, "last", json.dumps(record))
        pipe.lpush(MAINTENANCE_RECENT_KEY, json.dumps(record))
        pipe.ltrim(MAINTENANCE_RECENT_KEY, 0, RECENT_KEPT - 1)
        pipe.execute()
    log.info("clean-up done in %.3f s: %s", record["seconds"], counts)
    return counts
