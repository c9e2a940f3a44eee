"""Store and enqueue a new job in one Redis round trip."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from redis import Redis
from rq import Queue
from rq.job import Job

from service.jobs import index
from service.jobs.queues import LLM_TASK

# RQ's own SIGALRM timeout is a backstop behind the job's deadline, which the task
# enforces itself (and which also closes the provider connection).
RQ_TIMEOUT_GRACE_S = 30


def submit_job(
    connection: Redis,
    queue: Queue,
    *,
    client: str,
    request: dict[str, Any],
    metadata: dict[str, str],
    timeout_s: int,
    result_ttl_s: int,
) -> Job:
    """Create the RQ job (our fields in meta), push it and index it for its client, atomically."""
    job_id = uuid4().hex
    meta = {
        "client": client,
        "priority": queue.name,
        "model": request["model"],
        "metadata": metadata,
        "timeout_s": timeout_s,
        "attempts": 0,
        "output_tokens": 0,
        "text": "",
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
        (job,) = queue.enqueue_many([data], pipeline=pipe)
        index.add(pipe, client, job.id, job.created_at)
        pipe.execute()
    return job
