"""`Idempotency-Key`: the same key and body from the same client gives back what the first
request created (a job, or a batch), instead of creating it again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

Created = TypeVar("Created")


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
        # Hashed: the client's key may be long or odd; its hash is a safe, fixed-size name.
        return f"llmjobs:idempotency:{self.client}:{hashlib.sha256(self.key.encode()).hexdigest()}"

    def record(self, created_id: str) -> str:
        return json.dumps({"id": created_id, "fingerprint": self.fingerprint})

    def replayed_id(self, stored: bytes) -> str:
        """The id of what the first request created, or IdempotencyConflict when the bodies differ."""
        record = json.loads(stored)
        if record["fingerprint"] != self.fingerprint:
            raise IdempotencyConflict("this Idempotency-Key was already used with a different request body")
        return record["id"]


def write_once(
    connection: Redis,
    claim: IdempotencyClaim | None,
    created_id: str,
    write: Callable[[Pipeline], Created],
    earlier: Callable[[str], Created | None],
) -> tuple[Created, bool]:
    """Run `write` (it queues its commands on the pipeline) in one MULTI/EXEC: returns its
    result and True. With a claim, the key is stored in that same MULTI/EXEC, and WATCHed
    first: when it already names something `earlier(id)` still finds, that is returned with
    False and nothing is written; a concurrent request storing the key meanwhile makes our
    EXEC fail, and we look again. Raises IdempotencyConflict for the key with another body."""
    with connection.pipeline() as pipe:
        while True:
            try:
                if claim is not None:
                    pipe.watch(claim.redis_key)
                    stored = pipe.get(claim.redis_key)
                    if stored is not None and (found := earlier(claim.replayed_id(stored))) is not None:
                        return found, False  # (expired since: this request creates it anew)
                    pipe.multi()
                    pipe.set(claim.redis_key, claim.record(created_id), ex=claim.ttl_s)
                result = write(pipe)
                pipe.execute()
                return result, True
            except WatchError:
                continue
