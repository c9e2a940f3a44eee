"""The batch tier's provider batches in Redis: which jobs went into which provider batch,
who polls it, and how far it got.

A record is opened when its jobs are taken from the batch queue (one script: a job taken
is always in a record), so it exists before the provider's batch does. Its life:
`collected` (jobs listed) -> `creating` (a create was sent; `creating_at`) -> `created`
(the provider's id recorded) -> `marked` (its jobs show it) -> deleted, once every result
has been read into its jobs. Its lease says which worker advances it; a worker that dies
lets the lease lapse and another takes the record over where it stands.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC
from typing import cast

from redis import Redis
from rq.job import Job
from rq.utils import utcparse

from service.jobs.storage import scripts
from service.jobs.storage.keys import (
    COLLECTOR_LOCK_KEY,
    OPEN_PROVIDER_BATCHES_KEY,
    RECORDED_PROVIDER_BATCHES_KEY,
    provider_batch_key,
)

LEASE_TTL_S = 10  # a provider batch's owner renews its lease every second or so
RECORDED_KEPT_S = 24 * 3600  # how long a recorded provider batch id is remembered


@dataclass(frozen=True)
class OpenBatch:
    """One provider batch's record, as read."""

    local_id: str
    collected_at: float
    creating_at: float | None  # a create was sent then (maybe by a worker that died)
    provider_id: str | None
    submitted_at: str | None  # ISO 8601, the provider's created_at
    marked: bool  # its jobs show it (status running, provider_batch)
    cancel_sent: bool  # every job was canceled: the provider was asked to cancel it


def take_collector_lock(connection: Redis, owner: str, ttl_s: float) -> bool:
    """One worker collects at a time, so a burst of jobs goes out in as few provider batches as fit."""
    return bool(connection.set(COLLECTOR_LOCK_KEY, owner, px=max(1, int(ttl_s * 1000)), nx=True))


def collect(connection: Redis, queue_key: str, count: int, owner: str) -> OpenBatch | None:
    """Open a provider batch with up to `count` jobs from the head of the batch queue, its
    lease ours; None when the queue is empty."""
    local_id = uuid.uuid4().hex
    now = time.time()
    keys = [
        queue_key,
        OPEN_PROVIDER_BATCHES_KEY,
        provider_batch_key(local_id),
        provider_batch_key(local_id, "jobs"),
        provider_batch_key(local_id, "lease"),
    ]
    taken = scripts.registered(connection, scripts.COLLECT_BATCH)(
        keys=keys, args=[count, now, local_id, owner, LEASE_TTL_S]
    )
    if not taken:
        return None
    return OpenBatch(local_id, now, None, None, None, False, False)


def oldest_waiting_since(connection: Redis, queue_key: str) -> float | None:
    """When the job at the head of the batch queue was queued (epoch s); None: none waits."""
    head = cast("bytes | None", connection.lindex(queue_key, 0))
    if head is None:
        return None
    enqueued = cast("bytes | None", connection.hget(Job.key_for(head.decode()), "enqueued_at"))
    if enqueued is None:
        return time.time()  # gone meanwhile: count it as just queued
    return utcparse(enqueued.decode()).replace(tzinfo=UTC).timestamp()


def load(connection: Redis, local_id: str) -> OpenBatch | None:
    raw = cast("dict[bytes, bytes]", connection.hgetall(provider_batch_key(local_id)))
    if not raw:
        return None
    fields = {key.decode(): value.decode() for key, value in raw.items()}
    return OpenBatch(
        local_id,
        float(fields.get("collected_at", 0)),
        float(fields["creating_at"]) if "creating_at" in fields else None,
        fields.get("provider_id"),
        fields.get("submitted_at"),
        "marked" in fields,
        "cancel_sent" in fields,
    )


def job_ids(connection: Redis, local_id: str) -> list[str]:
    listed = cast("list[bytes]", connection.lrange(provider_batch_key(local_id, "jobs"), 0, -1))
    return [raw.decode() for raw in listed]


def drop_jobs(connection: Redis, local_id: str, dropped: list[str], *, back_to: str | None = None) -> None:
    """Take jobs out of the record: ended ones, or (`back_to` the queue's key) ones that go
    back to the head of the batch queue for a later provider batch, in the same step."""
    if not dropped:
        return
    with connection.pipeline() as pipe:
        for job_id in dropped:
            pipe.lrem(provider_batch_key(local_id, "jobs"), 1, job_id)
        if back_to is not None:
            pipe.lpush(back_to, *reversed(dropped))
        pipe.execute()


def note(connection: Redis, local_id: str, **fields: str | float) -> None:
    """Record how far the provider batch got (`creating_at`, `provider_id`, `marked`, ...)."""
    with connection.pipeline() as pipe:
        pipe.hset(provider_batch_key(local_id), mapping=fields)
        if "provider_id" in fields:
            now = time.time()
            pipe.zadd(RECORDED_PROVIDER_BATCHES_KEY, {str(fields["provider_id"]): now})
            pipe.zremrangebyscore(RECORDED_PROVIDER_BATCHES_KEY, 0, now - RECORDED_KEPT_S)
        pipe.execute()


def known_provider_ids(connection: Redis) -> set[str]:
    """The provider batches our records held this last day (a crashed create's orphan is not among them)."""
    return {raw.decode() for raw in cast("list[bytes]", connection.zrange(RECORDED_PROVIDER_BATCHES_KEY, 0, -1))}


def hold(connection: Redis, local_ids: list[str], owner: str) -> list[str]:
    """Renew our leases and take the lapsed ones; returns the records now ours."""
    if not local_ids:
        return []
    keys = [provider_batch_key(local_id, "lease") for local_id in local_ids]
    held = scripts.registered(connection, scripts.HOLD_LEASES)(keys=keys, args=[owner, LEASE_TTL_S])
    return [local_id for local_id, mine in zip(local_ids, held, strict=True) if mine]


def open_batches(connection: Redis) -> list[tuple[str, float]]:
    """Every open record, oldest first: (our id, when its jobs were collected)."""
    entries = cast("list[tuple[bytes, float]]", connection.zrange(OPEN_PROVIDER_BATCHES_KEY, 0, -1, withscores=True))
    return [(raw.decode(), score) for raw, score in entries]


def close(connection: Redis, batch: OpenBatch) -> None:
    """Every result is in its job: the record goes."""
    with connection.pipeline() as pipe:
        pipe.zrem(OPEN_PROVIDER_BATCHES_KEY, batch.local_id)
        pipe.delete(*(provider_batch_key(batch.local_id, part) for part in ("", "jobs", "lease")))
        pipe.execute()
