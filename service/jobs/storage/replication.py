"""REDIS_MIN_REPLICAS_ACK: a write that answers a client waits until replicas have it."""

from __future__ import annotations

from redis import Redis
from redis.exceptions import RedisError

from service.jobs.storage.keys import REPLICATION_MARK_KEY, REPLICATION_MARK_TTL_S


class NotReplicated(RedisError):
    """Fewer replicas than REDIS_MIN_REPLICAS_ACK confirmed a write in time: it may be lost
    in a failover, so it must not be acknowledged."""

    def __init__(self, wanted: int, confirmed: int, timeout_ms: int) -> None:
        super().__init__(
            f"the job store copied the write to {confirmed} of the {wanted} replicas it needs "
            f"(REDIS_MIN_REPLICAS_ACK) within {timeout_ms} ms; try again shortly"
        )


def confirm_replicated(connection: Redis, replicas: int, timeout_ms: int) -> None:
    """Return once `replicas` replicas have every write this thread made before the call;
    raise NotReplicated after `timeout_ms` otherwise (0 replicas: at once, nothing sent).

    WAIT counts the writes of the connection it runs on, and a write that answers a client
    (an admission script, a retry's transaction) ran on whichever pooled connection was
    free. So a mark is written on WAIT's own connection, in one round trip with it:
    replication is one ordered stream, and a replica that has the mark has every write the
    primary applied before it, which includes the caller's (each had answered already)."""
    if replicas <= 0:
        return
    with connection.pipeline(transaction=False) as pipe:
        pipe.set(REPLICATION_MARK_KEY, 1, ex=REPLICATION_MARK_TTL_S)
        pipe.wait(replicas, timeout_ms)
        _, confirmed = pipe.execute()
    if confirmed < replicas:
        raise NotReplicated(replicas, confirmed, timeout_ms)
