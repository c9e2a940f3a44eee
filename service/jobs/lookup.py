"""Find a client's jobs: one by id, or a page of them, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis import Redis
from rq.job import Job

from service.jobs import index
from service.jobs.ids import is_job_id
from service.jobs.progress import live_text_key
from service.jobs.queues import CLIENT_TASKS, SERIALIZER
from service.jobs.records import restore_job
from service.jobs.status import has_unreadable_record, public_status

# A status filter may skip many jobs; one request reads at most this many index entries
# and then hands back a cursor, so a rare status never turns into a full scan.
MAX_SCANNED_PER_PAGE = 1000


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


def fetch_client_job(connection: Redis, client: str, job_id: str) -> Job | None:
    """The job, or None if it does not exist or belongs to someone else (both look alike).
    One round trip: the job's hash and the text a running attempt has streamed so far."""
    if not is_job_id(job_id):  # RQ refuses some ids with an error; none of ours looks odd
        return None
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(Job.key_for(job_id))
        pipe.get(live_text_key(job_id))
        raw, live_text = pipe.execute()
    job = restore_job(connection, job_id, raw)
    if job is None or not _owned_by(job, client):
        return None
    if live_text and not job.meta.get("text"):
        job.meta["text"] = live_text.decode()
    return job


def list_client_jobs(
    connection: Redis, client: str, *, limit: int, cursor: str | None = None, status: str | None = None
) -> JobPage:
    after = index.decode_cursor(cursor) if cursor else None
    found: list[Job] = []
    scanned = 0
    while len(found) < limit and scanned < MAX_SCANNED_PER_PAGE:
        members = index.newest_first(connection, client, after, count=limit - len(found))
        if not members:
            after = None  # the end: no next page
            break
        jobs = Job.fetch_many([index.job_id_of(m) for m in members], connection=connection, serializer=SERIALIZER)
        # Jobs past their result TTL are gone from Redis: drop them from the index too.
        index.remove(connection, client, [m for m, job in zip(members, jobs, strict=True) if job is None])
        found += [j for j in jobs if j is not None and (status is None or public_status(j) == status)]
        scanned += len(members)
        after = members[-1]
    with_live_text(connection, found)
    return JobPage(found, index.encode_cursor(after) if after else None)


def with_live_text(connection: Redis, jobs: list[Job]) -> None:
    """Read the text that running (or retrying) jobs have streamed so far, which lives
    beside their meta until the attempt ends, into their meta: one round trip for all."""
    streaming = [job for job in jobs if not job.meta.get("text")]
    if not streaming:
        return
    texts = cast("list[bytes | None]", connection.mget([live_text_key(job.id) for job in streaming]))
    for job, text in zip(streaming, texts, strict=True):
        if text:
            job.meta["text"] = text.decode()


def _owned_by(job: Job, client: str) -> bool:
    if has_unreadable_record(job):  # its meta names no client any more: the client's index still does
        return index.contains(job.connection, client, job.id, job.created_at)
    return job.func_name in CLIENT_TASKS and job.meta.get("client") == client
