"""What a running job records in its meta: attempts, streamed text, retries, result, error.

Called from the worker's task; the RQ job hash is the one record, so the API and
rq-dashboard see progress without another store. Every write goes through one guard:
once a run of the job has completed it, no other run (say, one re-queued after its
worker went silent) may change the record, so a job that ran twice ends once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import chain
from typing import Any

from rq.job import Job

from service.config import Settings
from service.jobs import metrics
from service.jobs.control import cancel_key, completed_key
from service.jobs.counters import HashIncrements
from service.jobs.events import MAX_EVENTS, announced_key, events_key, progress_event
from service.jobs.resource import job_result
from service.jobs.status import FAILED
from service.jobs.usage import job_usage

# KEYS: job hash, completion marker, event stream, then counter hashes. ARGV: serialized
# meta, marker TTL ("" = not completing), progress event data ("" = none), stream cap,
# stream TTL, then for each counter hash: its TTL (0 = none), its number of fields, then
# field, amount, field, amount, ... The counters (usage, metrics) are added only by the
# completing save, in the same script: a job is counted once, however often it ran.
_GUARDED_SAVE = """
if redis.call('exists', KEYS[2]) == 1 then return 0 end
redis.call('hset', KEYS[1], 'meta', ARGV[1])
if ARGV[2] ~= '' then
  redis.call('set', KEYS[2], '1', 'EX', ARGV[2])
  local i = 6
  for k = 4, #KEYS do
    local ttl, fields = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
    for j = i + 2, i + 2 * fields, 2 do redis.call('hincrby', KEYS[k], ARGV[j], ARGV[j + 1]) end
    if ttl > 0 then redis.call('expire', KEYS[k], ttl) end
    i = i + 2 + 2 * fields
  end
end
if ARGV[3] ~= '' then
  redis.call('xadd', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'type', 'progress', 'data', ARGV[3])
  redis.call('expire', KEYS[3], ARGV[5])
end
return 1
"""


class Superseded(Exception):
    """Another run of this job has already completed it."""


def _save(
    job: Job, *, completes_for_s: int | None = None, counters: Sequence[HashIncrements] = (), progress: str = ""
) -> None:
    save = job.connection.register_script(_GUARDED_SAVE)
    keys = [job.key, completed_key(job.id), events_key(job.id)]
    args = [job.serializer.dumps(job.meta), completes_for_s or "", progress, MAX_EVENTS, job.result_ttl]
    for counter in counters:
        keys.append(counter.key)
        args += [counter.ttl_s or 0, len(counter.amounts), *chain.from_iterable(counter.amounts.items())]
    if not save(keys=keys, args=args):
        # Adopt the winner's record, so RQ's own later saves of this job keep it.
        job.meta = job.get_meta(refresh=True)
        raise Superseded(job.id)


def start_new_run(job: Job, *, max_attempts: int) -> None:
    """Make an ended job's next run a fresh one: a new deadline and attempt budget, no old
    error, cancel or webhook, an empty event stream, its end announced afresh. `attempts`
    keeps counting: it is every LLM call made for the job. The caller saves the job."""
    meta = job.meta
    meta.pop("deadline_at", None)
    meta.update(
        canceled_at=None, error=None, result=None, next_attempt_at=None, webhook=None,
        attempt_limit=meta.get("attempts", 0) + max_attempts,
    )  # fmt: skip
    job.number_of_retries = 0  # RQ's own count, checked against the Retry a task returns
    with job.connection.pipeline(transaction=False) as pipe:
        pipe.delete(cancel_key(job.id), events_key(job.id), announced_key(job.id))
        metrics.JOB_RETRIES.inc(pipe, queue=job.origin, reason="requested")
        pipe.execute()


def start_attempt(job: Job, *, max_attempts: int = Settings.max_attempts) -> float:
    """Count the attempt, reset its progress, and return the job's deadline (epoch s).

    The deadline is fixed at the first attempt: `timeout_s` bounds the whole job. A job
    whose announced end is `failed` was re-queued behind our back (rq-dashboard's requeue,
    RQ's own `FailedJobRegistry.requeue`): it starts a new run, as `POST /retry` would.
    Not so a `canceled` one: a worker that dequeued a job just as it was canceled in the
    queue must still see the cancel request and stop (re-running a canceled job is
    `POST /retry`'s job). A completed job stays completed: `_save` refuses it below.
    """
    if job.connection.get(announced_key(job.id)) == FAILED.encode():
        start_new_run(job, max_attempts=max_attempts)
    meta = job.meta
    meta["attempts"] = meta.get("attempts", 0) + 1
    meta.setdefault("deadline_at", time.time() + meta["timeout_s"])
    meta.update(text="", output_tokens=0, error=None, result=None, next_attempt_at=None)
    _save(job)
    return meta["deadline_at"]


class ProgressRecorder:
    """Collects streamed text and writes it to the job at most once per `interval_s`."""

    def __init__(self, job: Job, interval_s: float):
        self._job = job
        self._interval_s = interval_s
        self._parts: list[str] = []
        self._published = 0  # parts already sent as progress events
        self._chunks = 0
        self._last_write = time.monotonic()

    def add(self, text: str) -> None:
        self._parts.append(text)
        # A delta is usually one token; the exact count replaces this at the end.
        self._chunks += 1
        if time.monotonic() - self._last_write >= self._interval_s:
            self.flush()

    def flush(self) -> None:
        """Write the text so far, and the new part of it as a progress event."""
        new_text = "".join(self._parts[self._published :])
        self._job.meta.update(text="".join(self._parts), output_tokens=self._chunks)
        event = progress_event(new_text, self._chunks, self._job.meta["attempts"]) if new_text else ""
        _save(self._job, progress=event)
        self._published = len(self._parts)
        self._last_write = time.monotonic()


def record_result(
    job: Job,
    *,
    text: str,
    stop_reason: str | None,
    usage: dict[str, int],
    cost_usd: float | None,
    keep_for_s: int,
    usage_retention_days: int,
) -> dict[str, Any]:
    """Complete the job (once), adding it to its client's usage counters and the metrics;
    returns what RQ keeps as the job's return value."""
    result = {"stop_reason": stop_reason, "usage": usage, "cost_usd": cost_usd}
    job.meta.update(text=text, output_tokens=usage["output_tokens"], result=result)
    model = job.meta["model"]
    counters = (
        job_usage(job.meta["client"], model, usage, cost_usd, usage_retention_days),
        metrics.llm_usage(model, usage["input_tokens"], usage["output_tokens"], cost_usd),
    )
    _save(job, completes_for_s=keep_for_s, counters=counters)
    return job_result(job)


def record_retry(job: Job, error: dict[str, Any], next_attempt_at: float) -> None:
    """The attempt failed and another is due at `next_attempt_at`; the error stays visible meanwhile."""
    job.meta.update(error=error, next_attempt_at=next_attempt_at)
    _save(job)


def record_error(job: Job, error: dict[str, Any], *, canceled: bool = False) -> None:
    job.meta["error"] = error
    if canceled:
        job.meta["canceled_at"] = time.time()
    _save(job)
