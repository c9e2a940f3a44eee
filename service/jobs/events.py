"""A job's event stream: `progress` events with the new text, then one terminal event.

A Redis stream per job, capped in length and expiring with the job; stream entry ids are
the SSE event ids, so `Last-Event-ID` resumes exactly where a client left off.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from redis import Redis
from rq.job import Job
from rq.utils import now

from service.jobs import metrics
from service.jobs.batches import job_ended as batch_job_ended
from service.jobs.deliveries import new_webhook, queue_delivery
from service.jobs.resource import job_resource
from service.jobs.status import TERMINAL_STATUSES, public_status

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


def events_key(job_id: str) -> str:
    return f"llmjobs:events:{job_id}"


def announced_key(job_id: str) -> str:
    return f"llmjobs:announced:{job_id}"


def is_event_id(value: str) -> bool:
    """A stream id Redis accepts: `<ms>-<seq>`, each part at most 2**64 - 1."""
    match = _EVENT_ID.fullmatch(value)
    return match is not None and all(int(part) <= _MAX_ID_PART for part in match.groups())


def progress_event(text: str, output_tokens: int, attempt: int) -> str:
    return json.dumps({"text": text, "output_tokens": output_tokens, "attempt": attempt})


def read_events(connection: Redis, job_id: str, after: str, block_ms: int) -> list[Event]:
    """Events after id `after` ("0" for all), waiting up to `block_ms` for the first."""
    answer = connection.xread({events_key(job_id): after}, count=500, block=block_ms)
    return [
        Event(entry_id.decode(), fields[b"type"].decode(), fields[b"data"].decode())
        for _stream, entries in answer
        for entry_id, fields in entries
    ]


def announce_end(job: Job) -> bool:
    """Publish the end of a job that has just ended, once per terminal state (a job that
    ran twice ends once; a re-run clears the mark): its terminal event, and its webhook
    when it has a callback URL. Returns False if it was already announced."""
    status = public_status(job)
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"job {job.id} has not ended: {status}")
    if not job.connection.set(announced_key(job.id), status, nx=True, ex=job.result_ttl):
        return False
    if callback_url := job.meta.get("callback_url"):
        job.meta["webhook"] = new_webhook(callback_url)
        job.save_meta()
    payload = json.dumps(job_resource(job))
    with job.connection.pipeline(transaction=False) as pipe:
        pipe.xadd(events_key(job.id), {"type": status, "data": payload}, maxlen=MAX_EVENTS, approximate=True)
        pipe.expire(events_key(job.id), job.result_ttl)
        metrics.JOBS_FINISHED.inc(pipe, queue=job.origin, outcome=status)
        lifetime_s = ((job.ended_at or now()) - job.created_at).total_seconds()
        metrics.JOB_DURATION.observe(pipe, lifetime_s, queue=job.origin, outcome=status)
        pipe.execute()
    if callback_url:
        queue_delivery(job, payload)  # the webhook's body is the terminal event's resource
    batch_job_ended(job)  # a job of a batch: the batch counts it (its last end fires the batch's webhook)
    return True
