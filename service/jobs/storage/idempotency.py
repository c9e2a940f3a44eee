"""`Idempotency-Key`: the same key and body from the same client gives back what the first
request created (a job, or a batch), instead of creating it again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from service.jobs.storage.keys import idempotency_key


class IdempotencyConflict(Exception):
    """The key was already used with a different body."""


@dataclass(frozen=True)
class IdempotencyClaim:
    """A client's key and the fingerprint of the body it came with."""

    client: str
    key: str
    fingerprint: str
    ttl_s: int

    @classmethod
    def for_request(cls, client: str, key: str, body: dict[str, Any], ttl_s: int) -> IdempotencyClaim:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return cls(client, key, hashlib.sha256(canonical.encode()).hexdigest(), ttl_s)

    @property
    def redis_key(self) -> str:
        return idempotency_key(self.client, self.key)

    def record(self, created_id: str) -> str:
        return json.dumps({"id": created_id, "fingerprint": self.fingerprint})

    def replayed_id(self, stored: bytes) -> str:
        """The id of what the first request created, or IdempotencyConflict when the bodies differ."""
        record = json.loads(stored)
        if record["fingerprint"] != self.fingerprint:
            raise IdempotencyConflict("this Idempotency-Key was already used with a different request body")
        return record["id"]
