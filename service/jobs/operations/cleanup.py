"""Periodic clean-up of what expired jobs leave behind; each function logs and returns its count.

Most of our per-job keys expire by themselves (events stream, completion and announced
markers: the job's result TTL; cancel requests and leases: short TTLs; idempotency keys and
usage hashes: their own TTLs). What does not: the per-client index (one sorted set per
client, whose members outlive their jobs) and any key whose EXPIRE was lost. These
functions remove the first and the leftovers of the second; they never shorten a TTL that
Redis already enforces.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import islice

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import CanceledJobRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from service.jobs.observability import budgets
from service.jobs.storage import index, replies
from service.jobs.storage.keys import (
    BUDGET_PREFIX,
    CLIENT_PREFIX,
    IDEMPOTENCY_PREFIX,
    PER_JOB_PREFIXES,
    RESERVATION_FIELDS,
    USAGE_PREFIX,
)
from service.jobs.storage.queues import ALL_QUEUES, SERIALIZER, WEBHOOK_QUEUE

log = logging.getLogger(__name__)

BATCH = 500  # keys per SCAN step and per pipelined EXISTS


def _batches(items: Iterable, size: int = BATCH) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _missing_jobs(connection: Redis, job_ids: list[str]) -> set[str]:
    """The ids among `job_ids` whose RQ job hash no longer exists (one round trip)."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(Job.key_for(job_id))
        exists = pipe.execute()
    return {job_id for job_id, found in zip(job_ids, exists, strict=True) if not found}


def _count(connection: Redis, key: str) -> int:
    return replies.as_int(connection.zcard(key))


def prune_client_indexes(connection: Redis) -> int:
    """Remove index members whose job has expired (or was deleted); returns how many."""
    removed = 0
    for key in connection.scan_iter(match=f"{CLIENT_PREFIX}*:jobs", count=BATCH, _type="zset"):
        # ZSCAN returns every member present throughout, even while we remove others.
        for batch in _batches(m.decode() for m, _score in connection.zscan_iter(key, count=BATCH)):
            gone = _missing_jobs(connection, [index.job_id_of(m) for m in batch])
            stale = [m for m in batch if index.job_id_of(m) in gone]
            if stale:
                # Ids are never reused, so a job gone now stays gone: no race with submit.
                removed += replies.as_int(connection.zrem(key, *stale))
    log.info("pruned %d index entries of expired jobs", removed)
    return removed


def prune_orphan_job_keys(connection: Redis, *, idempotency_ttl_s: int, usage_retention_days: int) -> dict[str, int]:
    """Delete per-job keys whose job is gone, and give a TTL to idempotency keys and
    usage hashes that lost theirs. Returns {"orphans": n, "orphans_without_ttl": n,
    "idempotency_ttls": n, "usage_ttls": n}."""
    orphans = orphans_without_ttl = 0
    for prefix in PER_JOB_PREFIXES:
        for batch in _batches(k.decode() for k in connection.scan_iter(match=f"{prefix}*", count=BATCH)):
            gone = _missing_jobs(connection, [k.removeprefix(prefix) for k in batch])
            doomed = [k for k in batch if k.removeprefix(prefix) in gone]
            if not doomed:
                continue
            with connection.pipeline(transaction=False) as pipe:
                for key in doomed:
                    pipe.ttl(key)
                    pipe.delete(key)
                answers = pipe.execute()
            for ttl, deleted in zip(answers[::2], answers[1::2], strict=True):
                orphans += deleted
                orphans_without_ttl += bool(deleted and ttl == -1)
    log.info("removed %d keys of expired jobs (%d of them had no TTL)", orphans, orphans_without_ttl)

    idempotency_ttls = _expire_persistent(connection, IDEMPOTENCY_PREFIX, lambda _key: ("expire", idempotency_ttl_s))
    log.info("gave %d idempotency keys without a TTL their TTL of %d s", idempotency_ttls, idempotency_ttl_s)
    usage_ttls = _expire_persistent(connection, USAGE_PREFIX, lambda key: _usage_expiry(key, usage_retention_days))
    log.info("gave %d usage hashes without a TTL their %d-day retention", usage_ttls, usage_retention_days)
    return {
        "orphans": orphans,
        "orphans_without_ttl": orphans_without_ttl,
        "idempotency_ttls": idempotency_ttls,
        "usage_ttls": usage_ttls,
    }


def release_lost_reservations(connection: Redis) -> int:
    """Release the budget reservations of jobs that are gone (expired or deleted unseen,
    say by an operator): no end of theirs will. Returns how many."""
    released = 0
    for key in connection.scan_iter(match=f"{BUDGET_PREFIX}*:reserved", count=BATCH, _type="hash"):
        client = key.decode().removeprefix(BUDGET_PREFIX).removesuffix(":reserved")
        fields = (f.decode() for f, _amount in connection.hscan_iter(key, count=BATCH))
        for batch in _batches(f for f in fields if f not in RESERVATION_FIELDS):
            gone = sorted(_missing_jobs(connection, batch))
            if gone:
                # Ids are never reused: a job gone now cannot end, nor be re-run, later.
                budgets.release_jobs(connection, client, dict.fromkeys(gone))
                released += len(gone)
    log.info("released the budget reservations of %d jobs that are gone", released)
    return released


def _usage_expiry(key: str, retention_days: int) -> tuple[str, int]:
    """A usage hash expires `retention_days` after the last job counted in it, so at the
    latest `retention_days` after its day ends (EXPIREAT in the past deletes it)."""
    day_text = key.removeprefix(USAGE_PREFIX).partition(":")[0]
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        return "expire", retention_days * 24 * 3600
    day_end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return "expireat", int((day_end + timedelta(days=retention_days)).timestamp())


def _expire_persistent(connection: Redis, prefix: str, expiry) -> int:
    fixed = 0
    for batch in _batches(k.decode() for k in connection.scan_iter(match=f"{prefix}*", count=BATCH)):
        with connection.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.ttl(key)
            ttls = pipe.execute()
        persistent = [key for key, ttl in zip(batch, ttls, strict=True) if ttl == -1]
        if not persistent:
            continue
        with connection.pipeline(transaction=False) as pipe:
            for key in persistent:
                command, value = expiry(key)
                # NX: a writer that set the TTL meanwhile wins; we only fill in a missing one.
                getattr(pipe, command)(key, value, nx=True)
            fixed += sum(map(bool, pipe.execute()))
    return fixed


def _prune_gone_jobs(connection: Redis, registry_key: str) -> int:
    """RQ never cleans its canceled registries (their entries do not expire): drop the
    entries whose job has expired."""
    removed = 0
    for batch in _batches(m.decode() for m, _score in connection.zscan_iter(registry_key, count=BATCH)):
        gone = _missing_jobs(connection, batch)
        if gone:
            removed += replies.as_int(connection.zrem(registry_key, *gone))
    return removed


def clean_rq_registries(connection: Redis) -> int:
    """RQ's own clean-up of expired registry entries, for every queue our workers serve;
    and entries of expired jobs in the canceled registries, which RQ keeps for good.

    Finished and failed registries: entries past their TTL are dropped. The started
    registry is cleaned only for the webhooks queue. On the LLM queues, RQ's
    StartedJobRegistry.cleanup would mark an abandoned job failed (or retry it by RQ's
    rules, not ours); the scheduler's lease-based recovery (`recover_abandoned_jobs`, on
    every poll) re-queues those within a minute and with our attempt accounting, so
    cleaning that registry here could only race it. Lost webhook deliveries are recovered
    the same way, but their entries expire only ~2 min after the attempt began, long after
    that; what RQ's clean-up still finds there are entries whose job is gone. Returns the
    entries removed."""
    removed = 0
    for name in ALL_QUEUES:
        queue = Queue(name, connection=connection, serializer=SERIALIZER)
        removed += _prune_gone_jobs(connection, CanceledJobRegistry(queue=queue, serializer=SERIALIZER).key)
        registries = [
            FinishedJobRegistry(queue=queue, serializer=SERIALIZER),
            FailedJobRegistry(queue=queue, serializer=SERIALIZER),
        ]
        if name == WEBHOOK_QUEUE:
            registries.append(StartedJobRegistry(queue=queue, serializer=SERIALIZER))
        for registry in registries:
            before = _count(connection, registry.key)
            registry.cleanup()
            removed += max(0, before - _count(connection, registry.key))
    log.info("removed %d expired entries from RQ's job registries", removed)
    return removed
