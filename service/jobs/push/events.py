"""A job's event stream: `progress` events with the new text, then one terminal event.

A Redis stream per job, capped in length and expiring with the job; stream entry ids are
the SSE event ids, so `Last-Event-ID` resumes exactly where a client left off.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.defaults import DEFAULT_RESULT_TTL
from rq.job import Job
from rq.utils import now

from service.bug_reports import report_bug
from service.jobs.observability import metrics
from service.jobs.push.batches import job_ended as batch_job_ended
from service.jobs.push.job_webhooks import new_webhook, queue_delivery
from service.jobs.storage import replies
from service.jobs.storage.keys import UNPUBLISHED_ENDS_KEY, announced_key, events_key
from service.jobs.storage.lookup import fetch_jobs
from service.jobs.storage.record import JobRecord
from service.jobs.storage.resource import job_resource
from service.jobs.storage.status import TERMINAL_STATUSES, public_status

log = logging.getLogger(__name__)

UNPUBLISHED_GRACE_S = 30  # a publisher takes milliseconds; one this late has died
MAX_EVENTS = 5000  # per job; a 10-minute stream writes ~2400 at the default progress rate
_EVENT_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_ID_PART = 2**64 - 1  # Redis stream ids are two unsigned 64-bit numbers; more is an error inside XREAD


@dataclass(frozen=True)
class Event:
    id: str
    type: str  # "progress" or a terminal status
    data: str  # JSON

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_STATUSES


def is_event_id(value: str) -> bool:
    """A stream id Redis accepts: `<ms>-<seq>`, each part at most 2**64 - 1."""
    match = _EVENT_ID.fullmatch(value)
    return match is not None and all(int(part) <= _MAX_ID_PART for part in match.groups())


def progress_event(text: str, output_tokens: int, attempt: int, deltas: list[dict[str, Any]] | None = None) -> str:
    """A `progress` event: the new text; `deltas`, when the reply streamed other blocks
    (thinking, tool input, citations), each with its block index and type."""
    event: dict[str, Any] = {"text": text, "output_tokens": output_tokens, "attempt": attempt}
    if deltas:
        event["deltas"] = deltas
    return json.dumps(event)


def read_events(connection: Redis, job_id: str, after: str, block_ms: int) -> list[Event]:
    """Events after id `after` ("0" for all), waiting up to `block_ms` for the first."""
    answer = replies.as_stream_read(connection.xread({events_key(job_id): after}, count=500, block=block_ms))
    return [
        Event(entry_id.decode(), fields[b"type"].decode(), fields[b"data"].decode())
        for _stream, entries in answer
        for entry_id, fields in entries
    ]


def claim_end(pipe: Pipeline, job: Job) -> None:
    """Queue, last on the transaction that records a job's end, the note that its end is
    yet to be published and the claim of its announcement; the transaction's last reply is
    what `announce_end(job, claimed=...)` takes. One round trip less per job than claiming
    apart, and a job's end is never recorded without its note."""
    _mark_unpublished_and_claim(pipe, job, public_status(job))


def _mark_unpublished_and_claim(pipe: Pipeline, job: Job, status: str) -> None:
    pipe.zadd(UNPUBLISHED_ENDS_KEY, {job.id: time.time()}, nx=True)
    pipe.set(announced_key(job.id), status, nx=True, ex=job.result_ttl)


def announce_end(job: Job, *, replay: bool = False, claimed: bool | None = None) -> bool:
    """Publish the end of a job that has just ended, once per terminal state (a job that
    ran twice ends once; a re-run clears the mark): its terminal event, its webhook when
    it has a callback URL, its batch's count. Returns False if it was already announced.
    `claimed`: the reply of the claim queued by `claim_end` (None: claim here).

    At least once: a publisher that dies midway leaves the job in the unpublished set,
    and `publish_unpublished_ends` replays it (`replay`): every step below is skipped when
    already done, and the webhook keeps the id it was given.
    """
    status = public_status(job)
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"job {job.id} has not ended: {status}")
    connection = job.connection
    if claimed is None:
        with connection.pipeline(transaction=False) as pipe:
            _mark_unpublished_and_claim(pipe, job, status)
            _, claimed = pipe.execute()
    if not claimed and not replay:
        connection.zrem(UNPUBLISHED_ENDS_KEY, job.id)
        return False
    record = JobRecord(job)
    callback_url = record.callback_url
    if callback_url and record.webhook is None:
        record.webhook = new_webhook(callback_url)
        job.save_meta()
    resource = job_resource(job)
    payload = json.dumps(resource)
    in_batch = bool(record.batch_id)
    if not (replay and _has_terminal_event(connection, job.id)):
        _publish_terminal_event(job, status, payload, last=not callback_url and not in_batch)
    if callback_url:
        queue_delivery(job, resource, first=True)  # the webhook carries the terminal event's resource
    if in_batch:
        batch_job_ended(job)  # the batch counts it (its last end fires the batch's webhook)
    if callback_url or in_batch or replay:
        connection.zrem(UNPUBLISHED_ENDS_KEY, job.id)
    return True


def _publish_terminal_event(job: Job, status: str, payload: str, *, last: bool) -> None:
    """The terminal event and the job's end in the metrics, in one transaction; `last`:
    nothing else to publish, so the job leaves the unpublished ends in the same round trip."""
    with job.connection.pipeline() as pipe:
        pipe.xadd(events_key(job.id), {"type": status, "data": payload}, maxlen=MAX_EVENTS, approximate=True)
        pipe.expire(events_key(job.id), job.get_result_ttl(DEFAULT_RESULT_TTL))
        metrics.JOBS_FINISHED.inc(pipe, queue=job.origin, outcome=status)
        lifetime_s = ((job.ended_at or now()) - job.created_at).total_seconds()
        metrics.JOB_DURATION.observe(pipe, lifetime_s, queue=job.origin, outcome=status)
        if last:
            pipe.zrem(UNPUBLISHED_ENDS_KEY, job.id)
        pipe.execute()


def _has_terminal_event(connection: Redis, job_id: str) -> bool:
    last = replies.as_stream_entries(connection.xrevrange(events_key(job_id), count=1))
    return bool(last) and last[0][1][b"type"].decode() in TERMINAL_STATUSES


def publish_unpublished_ends(connection: Redis, older_than_s: float = UNPUBLISHED_GRACE_S) -> list[str]:
    """Publish again every end whose publisher stopped midway (it has been unpublished for
    longer than any publisher takes); returns the job ids."""
    members = replies.as_members(connection.zrangebyscore(UNPUBLISHED_ENDS_KEY, 0, time.time() - older_than_s, 0, 500))
    due = [m.decode() for m in members]
    if not due:
        return []
    published = []
    for job_id, job in zip(due, fetch_jobs(connection, due), strict=True):
        if job is None or public_status(job) not in TERMINAL_STATUSES:
            # Expired (or unreadable), or running again: nothing to publish.
            connection.zrem(UNPUBLISHED_ENDS_KEY, job_id)
            continue
        try:
            announce_end(job, replay=True)
        except Exception as exc:  # a record this code cannot make a resource of
            # Dropped, reported once: retried, it would fail every poll, and a crash would
            # stop the scheduler (and its clean-up) at every restart.
            log.exception("job %s: its end cannot be published, dropped from the unpublished ends", job_id)
            report_bug(exc, job_id=job_id)
            connection.zrem(UNPUBLISHED_ENDS_KEY, job_id)
            continue
        published.append(job_id)
    return published
