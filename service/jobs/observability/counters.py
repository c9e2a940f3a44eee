"""Integer counters in Redis hashes that a job's completion step adds to, atomically with it."""

from __future__ import annotations

from dataclasses import dataclass

from redis.client import Pipeline


@dataclass(frozen=True)
class HashIncrements:
    """`amounts` to add to fields of the hash `key`, which then expires after `ttl_s` (None: never)."""

    key: str
    ttl_s: int | None
    amounts: dict[str, int]

    def add_to(self, pipe: Pipeline) -> None:
        """Queue the additions (and the expiry) on `pipe`, for writes outside the completion
        step's script (a billed result dropped by the batch tier)."""
        for field, amount in self.amounts.items():
            pipe.hincrby(self.key, field, amount)
        if self.ttl_s:
            pipe.expire(self.key, self.ttl_s)
