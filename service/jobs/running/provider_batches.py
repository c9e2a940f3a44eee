"""The batch tier's provider batches in Redis: which jobs went into which provider batch,
who polls it, and how far it got.

A record is opened when its jobs are taken from the batch queue (one script: a job taken
is always in a record), so it exists before the provider's batch does. Its life:
`collected` (jobs listed) -> `creating` (a create was sent; `creating_at`, and `newer_than`:
the newest provider batch recorded then) -> `created` (the provider's id recorded) ->
`marked` (its jobs show it) -> deleted, once every result has been read into its jobs. Its
lease says which worker advances it; a worker that dies lets the lease lapse and another
takes the record over where it stands.

A create whose worker died before recording its batch may leave several provider batches
that could be it (its own, another program's on the same API key): the record (the holder)
adopts the oldest, and a reader record is opened for each other one (`holder`: its id; no
jobs of its own), so that every one is read; the holder closes only after its readers have
(`readers`, `read`).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from redis import Redis, WatchError
from rq.job import Job
from rq.utils import utcparse

from service.jobs.storage import replies, scripts
from service.jobs.storage.keys import (
    COLLECTOR_LOCK_KEY,
    OPEN_PROVIDER_BATCHES_KEY,
    PROVIDER_CALLS_QUEUE_KEY,
    RECORDED_PROVIDER_BATCHES_KEY,
    provider_batch_key,
    provider_call_key,
)

CALL_ID_PREFIX = "c_"  # a document call's custom_id: c_<job id>_<8 hex>; a job's is its id
CALL_RESULT_TTL_S = 3600  # an answered call's result waits this long for its job's run
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
    deadline_at: float = math.inf  # the earliest deadline of its jobs still running in it (epoch s)
    newer_than: str | None = None  # its create's batch is newer than this one (recorded before it was sent)
    readers: tuple[str, ...] = ()  # our ids of the records reading the other batches its create may have made
    holder: str | None = None  # a reader: our id of the record whose jobs its results may end
    read: bool = False  # its results are read; it waits for its readers before it closes
    # Found again after its create's worker died, not known from the create's answer: it may
    # be another program's, so it is never canceled at the provider.
    adopted: bool = False


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
        PROVIDER_CALLS_QUEUE_KEY,
    ]
    taken = replies.as_int(
        scripts.registered(connection, scripts.COLLECT_BATCH)(
            keys=keys, args=[count, now, local_id, owner, LEASE_TTL_S]
        )
    )
    if not taken:
        return None
    return OpenBatch(local_id, now, None, None, None, False, False)


def waiting(connection: Redis, queue_key: str) -> int:
    """Jobs and document calls waiting to be collected."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.llen(queue_key)
        pipe.llen(PROVIDER_CALLS_QUEUE_KEY)
        return sum(pipe.execute())


def oldest_waiting_since(connection: Redis, queue_key: str) -> float | None:
    """When the job at the head of the batch queue, or the document call at the head of
    theirs, was queued, whichever is older (epoch s); None: none waits."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.lindex(queue_key, 0)
        pipe.lindex(PROVIDER_CALLS_QUEUE_KEY, 0)
        job_head, call_head = pipe.execute()
    moments = []
    if job_head is not None:  # a job or call gone meanwhile counts as just queued
        enqueued = replies.as_bytes(connection.hget(Job.key_for(job_head.decode()), "enqueued_at"))
        moments.append(utcparse(enqueued.decode()).replace(tzinfo=UTC).timestamp() if enqueued else time.time())
    if call_head is not None:
        queued_at = replies.as_bytes(connection.hget(provider_call_key(call_head.decode()), "queued_at"))
        moments.append(float(queued_at) if queued_at else time.time())
    return min(moments, default=None)


# --- a batch-tier document job's calls -------------------------------------------------------


def is_call(custom_id: str) -> bool:
    return custom_id.startswith(CALL_ID_PREFIX)


def queue_call(connection: Redis, job_id: str, params: dict[str, Any], ttl_s: int) -> str:
    """Queue one call of a document job for a provider batch; returns its id (its `custom_id`)."""
    call_id = f"{CALL_ID_PREFIX}{job_id}_{uuid.uuid4().hex[:8]}"
    with connection.pipeline() as pipe:
        pipe.hset(provider_call_key(call_id), mapping={"params": json.dumps(params), "queued_at": time.time()})
        pipe.expire(provider_call_key(call_id), ttl_s)
        pipe.rpush(PROVIDER_CALLS_QUEUE_KEY, call_id)
        pipe.execute()
    return call_id


def call_params(connection: Redis, call_ids: list[str]) -> list[dict[str, Any] | None]:
    """Each call's request; None for one its job no longer waits for."""
    with connection.pipeline(transaction=False) as pipe:
        for call_id in call_ids:
            pipe.hget(provider_call_key(call_id), "params")
        return [json.loads(raw) if raw else None for raw in pipe.execute()]


def answer_call(connection: Redis, call_id: str, answer: dict[str, Any]) -> bool:
    """A call's result (`{"message"}` or `{"error"}`), for its job's run, if it still waits
    and has none: the first result wins (a call in two provider batches, a result read
    twice). False: dropped."""
    key = provider_call_key(call_id)
    with connection.pipeline() as pipe:
        try:
            pipe.watch(key)
            if not pipe.hexists(key, "params") or pipe.hexists(key, "result"):
                return False
            pipe.multi()
            pipe.hset(key, "result", json.dumps(answer))
            pipe.expire(key, CALL_RESULT_TTL_S)  # a run that stopped waiting never deletes it
            pipe.execute()
        except WatchError:
            return False  # answered, or given up by its run, meanwhile
    return True


def call_answer(connection: Redis, call_id: str) -> dict[str, Any] | None:
    raw = replies.as_bytes(connection.hget(provider_call_key(call_id), "result"))
    return json.loads(raw) if raw else None


def drop_call(connection: Redis, call_id: str) -> None:
    """Its job no longer waits for it (answered, canceled, timed out): not sent, if not yet."""
    with connection.pipeline() as pipe:
        pipe.delete(provider_call_key(call_id))
        pipe.lrem(PROVIDER_CALLS_QUEUE_KEY, 1, call_id)
        pipe.execute()


def load(connection: Redis, local_id: str) -> OpenBatch | None:
    raw = replies.as_hash(connection.hgetall(provider_batch_key(local_id)))
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
        float(fields.get("deadline_at", "inf")),
        fields.get("newer_than"),
        tuple(fields["readers"].split(",")) if fields.get("readers") else (),
        fields.get("holder"),
        "read" in fields,
        "adopted" in fields,
    )


def job_ids(connection: Redis, local_id: str) -> list[str]:
    listed = replies.as_members(connection.lrange(provider_batch_key(local_id, "jobs"), 0, -1))
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


def note_create(connection: Redis, local_id: str) -> None:
    """A create is about to be sent: when, and the newest provider batch recorded before it
    (the provider lists batches in the order it made them: the one this create makes is
    newer, whatever the clocks say)."""
    newest = replies.as_members(connection.zrange(RECORDED_PROVIDER_BATCHES_KEY, -1, -1))
    with connection.pipeline() as pipe:
        pipe.hset(provider_batch_key(local_id), mapping={"creating_at": time.time()})
        if newest:
            pipe.hset(provider_batch_key(local_id), "newer_than", newest[0].decode())
        else:
            pipe.hdel(provider_batch_key(local_id), "newer_than")
        pipe.execute()


def open_readers(
    connection: Redis, holder: OpenBatch, adopted: tuple[str, str], others: list[tuple[str, str]], owner: str
) -> None:
    """The holder's create may have made any of several provider batches (each: its id,
    when it was made): the holder records `adopted` as its own, and a reader record is
    opened for each of the `others`, its lease ours; in one step (the next owner of a
    worker that dies after it finds the holder created, and every batch recorded)."""
    now = time.time()
    readers: list[str] = []
    with connection.pipeline() as pipe:
        for provider_id, submitted_at in others:
            local_id = uuid.uuid4().hex
            readers.append(local_id)
            pipe.hset(
                provider_batch_key(local_id),
                mapping={
                    "collected_at": holder.collected_at, "provider_id": provider_id, "submitted_at": submitted_at,
                    "marked": 1, "holder": holder.local_id, "adopted": 1,
                },
            )  # fmt: skip
            pipe.zadd(OPEN_PROVIDER_BATCHES_KEY, {local_id: holder.collected_at})
            pipe.set(provider_batch_key(local_id, "lease"), owner, ex=LEASE_TTL_S)
            pipe.zadd(RECORDED_PROVIDER_BATCHES_KEY, {provider_id: now})
        mapping = {"provider_id": adopted[0], "submitted_at": adopted[1], "readers": ",".join(readers), "adopted": 1}
        pipe.hset(provider_batch_key(holder.local_id), mapping=mapping)
        pipe.zadd(RECORDED_PROVIDER_BATCHES_KEY, {adopted[0]: now})
        pipe.execute()


def any_open(connection: Redis, local_ids: tuple[str, ...]) -> bool:
    """Some of these records are still open (their results not all read)."""
    if not local_ids:
        return False
    return replies.as_int(connection.exists(*(provider_batch_key(local_id) for local_id in local_ids))) > 0


def known_provider_ids(connection: Redis) -> set[str]:
    """The provider batches our records held this last day (a crashed create's orphan is not among them)."""
    return {raw.decode() for raw in replies.as_members(connection.zrange(RECORDED_PROVIDER_BATCHES_KEY, 0, -1))}


def hold(connection: Redis, local_ids: list[str], owner: str) -> list[str]:
    """Renew our leases and take the lapsed ones; returns the records now ours."""
    if not local_ids:
        return []
    keys = [provider_batch_key(local_id, "lease") for local_id in local_ids]
    held = replies.as_list(scripts.registered(connection, scripts.HOLD_LEASES)(keys=keys, args=[owner, LEASE_TTL_S]))
    return [local_id for local_id, mine in zip(local_ids, held, strict=True) if mine]


def open_batches(connection: Redis) -> list[tuple[str, float]]:
    """Every open record, oldest first: (our id, when its jobs were collected)."""
    entries = replies.as_scored(connection.zrange(OPEN_PROVIDER_BATCHES_KEY, 0, -1, withscores=True))
    return [(raw.decode(), score) for raw, score in entries]


def close(connection: Redis, batch: OpenBatch) -> None:
    """Every result is in its job: the record goes."""
    with connection.pipeline() as pipe:
        pipe.zrem(OPEN_PROVIDER_BATCHES_KEY, batch.local_id)
        pipe.delete(*(provider_batch_key(batch.local_id, part) for part in ("", "jobs", "lease")))
        pipe.execute()
