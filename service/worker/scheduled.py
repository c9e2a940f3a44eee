"""Jobs waiting to retry move into their queue when due, from every worker process.

RQ's own scheduler does this under a lock that a worker retries only at its maintenance
(every 10 minutes), and a lock restored from Redis's AOF after a restart blocks it for
that long. This script moves due jobs atomically instead (ZREM decides which process
moves a job), so any number of processes may run it every second and no lock is needed.
"""

from __future__ import annotations

import time

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.utils import now, utcformat

from service.jobs.storage import scripts

BATCH = 1000


def promote_due_jobs(connection: Redis, queues: list[Queue]) -> int:
    """Move every job whose retry is due onto the end of its queue; returns how many."""
    args: list[str | int] = [int(time.time()), utcformat(now()), Job.redis_job_namespace_prefix, BATCH]
    with connection.pipeline(transaction=False) as pipe:
        for queue in queues:
            keys = [queue.scheduled_job_registry.key, queue.key, Queue.redis_queues_keys]
            scripts.add_to_pipeline(pipe, scripts.PROMOTE_DUE, keys, args)
        return sum(pipe.execute())
