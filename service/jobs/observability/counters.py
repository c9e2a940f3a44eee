"""Integer counters in Redis hashes that a job's completion step adds to, atomically with it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HashIncrements:
    """`amounts` to add to fields of the hash `key`, which then expires after `ttl_s` (None: never)."""

    key: str
    ttl_s: int | None
    amounts: dict[str, int]
