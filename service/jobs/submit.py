"""Store and enqueue a new job in one Redis round trip (a few more with an Idempotency-Key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import WatchError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

from service.jobs import index
from service.jobs.idempotency import IdempotencyClaim
from service.jobs.ids import new_job_id
from service.jobs.queues import LLM_TASK, SERIALIZER

# RQ's own SIGALRM timeout is a backstop behind the job's deadline, which the task
# enforces itself (and which also closes the provider connection).
RQ_TIMEOUT_GRACE_S = 30


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool  # False: an earlier request with the same Idempotency-Key created it


def submit_job(
    connection: Redis,
    queue: Queue,
    *,
    client: str,
    request: dict[str, Any],
    metadata: dict[str, str],
    timeout_s: int,
    max_attempts: int,
    result_ttl_s: int,
    callback_url: str | None = None,
    idempotency: IdempotencyClaim | None = None,
) -> Submitted:
    """Create the RQ job (our fields in meta), push it and index it for its client, atomically."""
    job_id = new_job_id()
    meta = {
        "client": client,
        "priority": queue.name,
        "model": request["model"],
        "metadata": metadata,
        "timeout_s": timeout_s,
        "attempts": 0,
        "attempt_limit": max_attempts,  # fixed per job, like its deadline
        "output_tokens": 0,
        "text": "",
        "callback_url": callback_url,
    }
    data = Queue.prepare_data(
        LLM_TASK,
        kwargs={"request": request},
        job_id=job_id,
        timeout=timeout_s + RQ_TIMEOUT_GRACE_S,
        result_ttl=result_ttl_s,
        failure_ttl=result_ttl_s,
        meta=meta,
        # Shown in rq-dashboard; the default would be the whole call, prompt included.
        description=f"{request['model']} for {client}",
    )
    with connection.pipeline() as pipe:
        while True:
            try:
                if idempotency is not None:
                    # WATCH: a concurrent request storing the same key makes our EXEC fail.
                    pipe.watch(idempotency.redis_key)
                    if (earlier := _earlier_job(connection, pipe.get(idempotency.redis_key), idempotency)) is not None:
                        return Submitted(earlier, created=False)
                    pipe.multi()
                    pipe.set(idempotency.redis_key, idempotency.record(job_id), ex=idempotency.ttl_s)
                (job,) = queue.enqueue_many([data], pipeline=pipe)
                index.add(pipe, client, job.id, job.created_at)
                pipe.execute()
                return Submitted(job, created=True)
            except WatchError:
                continue  # the key was stored meanwhile: read it again


def _earlier_job(connection: Redis, stored: bytes | None, claim: IdempotencyClaim) -> Job | None:
    if stored is None:
        return None
    job_id = claim.replayed_job_id(stored)  # raises IdempotencyConflict on another body
    try:
        return Job.fetch(job_id, connection=connection, serializer=SERIALIZER)
    except NoSuchJobError:
        return None  # expired since: this request creates a new job under the same key
