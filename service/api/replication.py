"""REDIS_MIN_REPLICAS_ACK for the routes whose success tells a client its write is kept
(a submit, a batch, a document, a retry): the answer waits until that many replicas have
the write (`storage.replication.confirm_replicated`), else it is a 503 and the client tries
again, so a write acknowledged is not lost with the primary in a failover."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from service.api.context import app_context
from service.jobs.storage.replication import confirm_replicated

REPLICATED_503 = (
    "A queue is full (QUEUE_MAX_DEPTH), Redis is away, or fewer replicas than REDIS_MIN_REPLICAS_ACK confirmed the "
    "write in time; see Retry-After."
)

View = TypeVar("View", bound=Callable[..., Any])


def replicated(view: View) -> View:
    """Decorate a route's method, innermost (below flask-smorest's decorators): it runs
    after every write the view made, before its answer is serialized and sent."""

    @functools.wraps(view)
    def acknowledged(*args: Any, **kwargs: Any) -> Any:
        answer = view(*args, **kwargs)
        ctx = app_context()
        confirm_replicated(ctx.redis, ctx.settings.redis_min_replicas_ack, ctx.settings.redis_ack_timeout_ms)
        return answer

    return acknowledged  # type: ignore[return-value]
