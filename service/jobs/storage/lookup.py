"""Find jobs: a client's one by id or a page of them, newest first; any ids in one round trip.

Anyone with access to Redis can leave a record RQ cannot read: a hash without `data`, a
status RQ does not know, a call pickled by a tool run without our JSON serializer. One
such record must never fail a whole read (a page of the list, a scheduler poll): it reads
as a job that does not exist, and is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis import Redis
from rq.job import Job

from service.jobs.storage import index, replies, scripts
from service.jobs.storage.ids import is_job_id
from service.jobs.storage.keys import live_text_key
from service.jobs.storage.queues import CLIENT_TASKS, SERIALIZER
from service.jobs.storage.record import JobRecord, has_unreadable_record
from service.jobs.storage.status import FAILED, may_show_as, public_status

# A status filter may skip many jobs; one request reads at most this many index entries
# (their status, SCAN_BATCH at a time) and then hands back a cursor, so a rare status never
# turns into a full scan.
MAX_SCANNED_PER_PAGE = 1000
SCAN_BATCH = 200
# Stands for the call in a job restored without it (a listing): never run, never shown.
REQUEST_NOT_READ = SERIALIZER.dumps(("(not read)", None, [], {}))

log = logging.getLogger(__name__)


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
    record = JobRecord(job)
    if live_text and not record.text:
        record.text = live_text.decode()
    return job


def list_client_jobs(
    connection: Redis, client: str, *, limit: int, cursor: str | None = None, status: str | None = None
) -> JobPage:
    """A page of the client's jobs, newest first. What it holds in memory is bounded by
    `limit` jobs, not by what it skips: a status filter reads only RQ's status of each job it
    passes over, and a job's request (its prompt, up to MAX_BODY_BYTES) is never read."""
    after = index.decode_cursor(cursor) if cursor else None
    found: list[Job] = []
    scanned = 0
    while len(found) < limit and scanned < MAX_SCANNED_PER_PAGE:
        count = limit - len(found) if status is None else min(SCAN_BATCH, MAX_SCANNED_PER_PAGE - scanned)
        members = index.newest_first(connection, client, after, count=count)
        if not members:
            after = None  # the end: no next page
            break
        candidates = members if status is None else _may_have_status(connection, members, status)
        page_end = _collect(connection, client, candidates, status, found, limit)
        after = members[-1] if page_end is None else page_end  # the next page starts after it
        scanned += len(members)
    with_live_text(connection, found)
    return JobPage(found, index.encode_cursor(after) if after else None)


def _collect(
    connection: Redis, client: str, candidates: list[str], status: str | None, found: list[Job], limit: int
) -> str | None:
    """Read the jobs of `candidates` (index members, newest first), `limit` at a time, and add
    those that show `status` (any, when None) to `found` until it holds `limit`. Returns the
    member the page ended at, None when the candidates did not fill it."""
    for start in range(0, len(candidates), limit):
        batch = candidates[start : start + limit]
        jobs = _fetch_without_request(connection, [index.job_id_of(m) for m in batch])
        # Jobs past their result TTL are gone from Redis (or cannot be read): drop them from the index too.
        index.remove(connection, client, [m for m, job in zip(batch, jobs, strict=True) if job is None])
        for member, job in zip(batch, jobs, strict=True):
            if job is not None and (status is None or public_status(job) == status):
                found.append(job)
                if len(found) == limit:
                    return member
    return None


def _may_have_status(connection: Redis, members: list[str], status: str) -> list[str]:
    """The members whose RQ status could show as `status` (one script for all): the others
    are passed over without reading their records. A record whose meta is not ours (JSON)
    reads as failed, whatever RQ says."""
    keys = [Job.key_for(index.job_id_of(member)) for member in members]
    stored = replies.as_list(scripts.registered(connection, scripts.READ_JOB_STATUSES)(keys=keys))
    return [
        member
        for member, (rq_status, meta_start) in zip(members, stored, strict=True)
        if may_show_as(rq_status or None, status) or (meta_start not in (b"{", b"") and status == FAILED)
    ]


def _fetch_without_request(connection: Redis, job_ids: list[str]) -> list[Job | None]:
    """Like `fetch_jobs`, but without each job's `data` (the call and its request, which the
    resource never shows): a listing of jobs with megabyte prompts reads kilobytes."""
    answer = replies.as_list(
        scripts.registered(connection, scripts.READ_JOBS_EXCEPT)(
            keys=[Job.key_for(job_id) for job_id in job_ids], args=["data"]
        )
    )
    records = [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in answer]
    return [
        restore_job(connection, job_id, {**record, b"data": REQUEST_NOT_READ} if b"data" in record else record)
        for job_id, record in zip(job_ids, records, strict=True)
    ]


def with_live_text(connection: Redis, jobs: list[Job]) -> None:
    """Read the text that running (or retrying) jobs have streamed so far, which lives
    beside their meta until the attempt ends, into their meta: one round trip for all."""
    streaming = [job for job in jobs if not JobRecord(job).text]
    if not streaming:
        return
    texts = replies.as_values(connection.mget([live_text_key(job.id) for job in streaming]))
    for job, text in zip(streaming, texts, strict=True):
        if text:
            JobRecord(job).text = text.decode()


def _owned_by(job: Job, client: str) -> bool:
    if has_unreadable_record(job):  # its meta names no client any more: the client's index still does
        return index.contains(job.connection, client, job.id, job.created_at)
    return job.func_name in CLIENT_TASKS and JobRecord(job).client == client


def fetch_job(connection: Redis, job_id: str) -> Job | None:
    """The job, or None when it does not exist (or its record cannot be restored, logged)."""
    return fetch_jobs(connection, [job_id])[0]


def fetch_jobs(connection: Redis, job_ids: list[str]) -> list[Job | None]:
    """Like `Job.fetch_many` (one round trip), but a record that cannot be restored is
    logged and given as None, like a job that does not exist."""
    with connection.pipeline(transaction=False) as pipe:  # reads of separate jobs: no MULTI needed
        for job_id in job_ids:
            pipe.hgetall(Job.key_for(job_id))
        records = pipe.execute()
    return [restore_job(connection, job_id, record) for job_id, record in zip(job_ids, records, strict=True)]


def restore_job(connection: Redis, job_id: str, record: dict[bytes, bytes]) -> Job | None:
    """The job a hash read with HGETALL holds; None for no hash, or one RQ cannot restore
    (logged)."""
    if not record:
        return None
    try:
        job = Job(job_id, connection=connection, serializer=SERIALIZER)
        job.restore(record)
    except Exception as exc:  # RQ raises what the bad field makes it raise
        log.error("job %s: its record cannot be read, skipped: %r", job_id, exc)
        return None
    return job
