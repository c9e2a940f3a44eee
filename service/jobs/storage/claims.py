"""Jobs a worker has taken from their queue and not yet started.

RQ's workers pop a job id (BLPOP) and then mark the job started. A worker killed in
between, or a Redis primary lost in between (the pop reached the replica, the start did
not), leaves the job `queued` in its hash and in no queue: lost for good. Here the pop and
a claim are one script; the start removes the claim in its own transaction; a claim older
than CLAIM_TTL_S belongs to a worker that will never start its job, and the scheduler's
recovery puts that job back at the front of its queue.

A script cannot block, so a worker whose queues are empty waits apart from the take: a BLMOVE
of each queue onto itself (worker/async_worker.py), which pops nothing.
"""

from __future__ import annotations

import redis.asyncio
from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.job import Job

from service.jobs.storage import replies, scripts
from service.jobs.storage.keys import CLAIMS_KEY, LEASE_TTL_S

# A start follows its pop in the same step of the worker's loop: a claim this old has lost
# its worker (the bound a running job's lease has).
CLAIM_TTL_S = LEASE_TTL_S
STALE_BATCH = 100  # claims looked at per recovery pass


# The worker's reads here go through its asyncio client: while one waits on Redis, its event
# loop runs the jobs' streams.


async def any_waiting(connection: redis.asyncio.Redis, queue_keys: list[str]) -> bool:
    """Whether any of `queue_keys` holds a job (Redis deletes an emptied list)."""
    return replies.as_int(await replies.awaited(connection.exists(*queue_keys))) > 0


async def take(connection: redis.asyncio.Redis, queue_keys: list[str], count: int) -> tuple[str, list[str]]:
    """Pop up to `count` job ids from the first of `queue_keys` that has any, each claimed
    in the same step; ("", []) when every queue is empty. (Sent whole, as scripts on a
    pipeline are: see scripts.add_to_pipeline.)"""
    keys = [CLAIMS_KEY, *queue_keys]
    answer = replies.as_list(await replies.awaited(connection.eval(scripts.TAKE_JOBS, len(keys), *keys, count)))
    if not answer:
        return "", []
    key, job_ids = answer
    return key.decode(), [job_id.decode() for job_id in job_ids]


def release(pipe: Pipeline, job_ids: list[str]) -> None:
    """Queue the end of these claims on `pipe`: their jobs are started, or will not be."""
    if job_ids:
        pipe.zrem(CLAIMS_KEY, *job_ids)


def put_back_stale(connection: Redis) -> list[tuple[str, str]]:
    """Put each job claimed over CLAIM_TTL_S ago, and still waiting, back at the front of
    its queue; returns their ids and queue names. A claim whose job has started, ended or
    gone is dropped."""
    stale = replies.as_members(
        scripts.registered(connection, scripts.STALE_CLAIMS)(keys=[CLAIMS_KEY], args=[CLAIM_TTL_S * 1000, STALE_BATCH])
    )
    put_back = []
    for job_id in (member.decode() for member in stale):
        origin = replies.as_bytes(connection.hget(Job.key_for(job_id), "origin"))
        if origin is None:  # the job is gone
            connection.zrem(CLAIMS_KEY, job_id)
            continue
        queue_key = Queue.redis_queue_namespace_prefix + origin.decode()
        script = scripts.registered(connection, scripts.PUT_BACK_CLAIMED)
        if replies.as_int(script(keys=[CLAIMS_KEY, Job.key_for(job_id), queue_key], args=[job_id])):
            put_back.append((job_id, origin.decode()))
    return put_back
