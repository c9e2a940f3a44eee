"""Signals between the API, the scheduler and the process running a job.

- cancel request: set by the API, seen by the running job within `CHECK_INTERVAL_S`;
- lease: refreshed by the running job; a started job without one has lost its worker;
- completion marker: set once, by the first run that finishes, so a job that ran twice
  ends once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from redis import Redis
from redis.exceptions import RedisError

from service.background import polling

log = logging.getLogger(__name__)

LEASE_TTL_S = 15  # a running job is presumed lost this long after its last sign of life
LEASE_REFRESH_S = 5
CHECK_INTERVAL_S = 0.25  # how often a running job looks for a cancel request


def cancel_key(job_id: str) -> str:
    return f"llmjobs:cancel:{job_id}"


def lease_key(job_id: str) -> str:
    return f"llmjobs:lease:{job_id}"


def completed_key(job_id: str) -> str:
    return f"llmjobs:completed:{job_id}"


def request_cancel(connection: Redis, job_id: str, ttl_s: int) -> None:
    connection.set(cancel_key(job_id), 1, ex=ttl_s)


@contextmanager
def supervised(connection: Redis, job_id: str, on_cancel: Callable[[], None] | None = None) -> Iterator[None]:
    """While the body runs, keep the job's lease alive and, given `on_cancel`, call it once
    a cancel request appears. Runs beside the call in a helper thread."""
    lease_renewed = time.monotonic()

    def check() -> bool:
        nonlocal lease_renewed
        try:
            if time.monotonic() - lease_renewed >= LEASE_REFRESH_S:
                connection.set(lease_key(job_id), 1, ex=LEASE_TTL_S)
                lease_renewed = time.monotonic()
            if on_cancel is not None and connection.exists(cancel_key(job_id)):
                on_cancel()
                return True
        except RedisError as exc:  # Redis away: keep trying; the lease may lapse
            log.warning("job %s: cannot reach Redis for lease/cancel check: %s", job_id, exc)
        return False

    connection.set(lease_key(job_id), 1, ex=LEASE_TTL_S)
    if on_cancel is not None and connection.exists(cancel_key(job_id)):
        on_cancel()  # canceled before it began (say, dequeued as it was canceled): no call at all
    try:
        with polling(check, CHECK_INTERVAL_S, name=f"supervise-{job_id}"):
            yield
    finally:
        with suppress(RedisError):  # the lease lapses by itself anyway
            connection.delete(lease_key(job_id))
