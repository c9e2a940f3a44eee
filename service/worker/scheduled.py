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

from service.jobs.storage.scripts import registered

# KEYS: scheduled registry, queue list, RQ's set of queues. ARGV: now (epoch s),
# enqueued_at (RQ's format), job key prefix, most jobs to move.
_PROMOTE_DUE = """
local due = redis.call('zrangebyscore', KEYS[1], 0, ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local moved = 0
for _, id in ipairs(due) do
  if redis.call('zrem', KEYS[1], id) == 1 and redis.call('exists', ARGV[3] .. id) == 1 then
    redis.call('hset', ARGV[3] .. id, 'status', 'queued', 'enqueued_at', ARGV[2])
    redis.call('rpush', KEYS[2], id)
    moved = moved + 1
  end
end
if moved > 0 then redis.call('sadd', KEYS[3], KEYS[2]) end
return moved
"""
BATCH = 1000


def promote_due_jobs(connection: Redis, queues: list[Queue]) -> int:
    """Move every job whose retry is due onto the end of its queue; returns how many."""
    script = registered(connection, _PROMOTE_DUE)
    args: list[str | int] = [int(time.time()), utcformat(now()), Job.redis_job_namespace_prefix, BATCH]
    with connection.pipeline(transaction=False) as pipe:
        for queue in queues:
            script(keys=[queue.scheduled_job_registry.key, queue.key, Queue.redis_queues_keys], args=args, client=pipe)
        return sum(pipe.execute())
