"""Reading RQ job records that something else may have written.

Anyone with access to Redis can leave a record RQ cannot read: a hash without `data`, a
status RQ does not know, a call pickled by a tool run without our JSON serializer. One
such record must never fail a whole read (a page of the list, a scheduler poll).
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from service.jobs.queues import SERIALIZER

log = logging.getLogger(__name__)


def fetch_jobs(connection: Redis, job_ids: list[str]) -> list[Job | None]:
    """Like `Job.fetch_many` (one round trip), but a record that cannot be restored is
    logged and given as None, like a job that does not exist."""
    with connection.pipeline() as pipe:
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


class ReadTolerantJSONSerializer(JSONSerializer):
    """Our JSON serializer for views of RQ's own records (rq-dashboard): a value another
    serializer wrote reads as RQ's own marker for it, `{"unserialized": ...}`, instead of
    failing the page. Never unpickles."""

    @staticmethod
    def loads(s: bytes | str, *args: Any, **kwargs: Any) -> Any:
        try:
            return JSONSerializer.loads(s, *args, **kwargs)
        except ValueError:  # UnicodeDecodeError included
            return {"unserialized": "written by another serializer; not shown"}
