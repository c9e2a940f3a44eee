"""What a running job records in its meta: attempts, streamed text, result, error.

Called from the worker's task; writes go to the RQ job hash so the API (and
rq-dashboard) see progress without another store.
"""

from __future__ import annotations

import time
from typing import Any

from rq.job import Job


def start_attempt(job: Job) -> float:
    """Count the attempt, reset its progress, and return the job's deadline (epoch s).

    The deadline is fixed at the first attempt: `timeout_s` bounds the whole job.
    """
    meta = job.meta
    meta["attempts"] = meta.get("attempts", 0) + 1
    meta.setdefault("deadline_at", time.time() + meta["timeout_s"])
    meta.update(text="", output_tokens=0, error=None, result=None)
    job.save_meta()
    return meta["deadline_at"]


class ProgressRecorder:
    """Collects streamed text and writes it to the job at most once per `interval_s`."""

    def __init__(self, job: Job, interval_s: float):
        self._job = job
        self._interval_s = interval_s
        self._parts: list[str] = []
        self._chunks = 0
        self._last_write = time.monotonic()

    def add(self, text: str) -> None:
        self._parts.append(text)
        # A delta is usually one token; the exact count replaces this at the end.
        self._chunks += 1
        if time.monotonic() - self._last_write >= self._interval_s:
            self.flush()

    def flush(self) -> None:
        self._job.meta.update(text="".join(self._parts), output_tokens=self._chunks)
        self._job.save_meta()
        self._last_write = time.monotonic()


def record_result(
    job: Job, *, text: str, stop_reason: str | None, usage: dict[str, int], cost_usd: float | None
) -> dict[str, Any]:
    """Store the final reply; returns what RQ keeps as the job's return value."""
    result = {"stop_reason": stop_reason, "usage": usage, "cost_usd": cost_usd}
    job.meta.update(text=text, output_tokens=usage["output_tokens"], result=result)
    job.save_meta()
    return {"text": text, **result}


def record_error(job: Job, error: dict[str, Any]) -> None:
    job.meta["error"] = error
    job.save_meta()
