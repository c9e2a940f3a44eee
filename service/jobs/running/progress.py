"""What a running job records in its meta: attempts, streamed text, retries, result, error.

Called from the worker's task; the RQ job hash is the one record, so the API and
rq-dashboard see progress without another store. Every write goes through one guard:
once a run of the job has completed it, no other run (say, one re-queued after its
worker went silent) may change the record, so a job that ran twice ends once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any, NoReturn

from redis import Redis
from rq.defaults import DEFAULT_RESULT_TTL
from rq.job import Job
from rq.utils import now

from service.config import Settings
from service.documents.steps import STEP_PENDING, STEP_SUCCEEDED
from service.jobs.observability import budgets, metrics
from service.jobs.observability.budgets import spend_increments
from service.jobs.observability.counters import HashIncrements
from service.jobs.observability.usage import job_usage, token_counts
from service.jobs.push.events import MAX_EVENTS, progress_event
from service.jobs.storage import scripts
from service.jobs.storage.keys import announced_key, cancel_key, completed_key, events_key, live_text_key
from service.jobs.storage.record import JobError, JobRecord, MessageResult, Usage
from service.jobs.storage.resource import job_result


class Superseded(Exception):
    """Another run of this job has already completed it."""


class RunRefused(Exception):
    """A new run may not start (its client's spend budget has no room): the job fails with `error`."""

    def __init__(self, error: JobError):
        super().__init__(error["message"])
        self.error = error


def _save_call(
    job: Job,
    *,
    completes_for_s: int | None = None,
    counters: Sequence[HashIncrements] = (),
    recorder: ProgressRecorder | None = None,
    starting: bool = False,
    event: str = "",
) -> tuple[list[str], list[Any]]:
    new_text = ""
    if recorder is not None and recorder.has_unwritten:
        new_text, deltas = recorder.unwritten()
        event = progress_event(new_text, recorder.chunks, JobRecord(job).attempts, deltas)
    keys = [job.key, completed_key(job.id), events_key(job.id), live_text_key(job.id), announced_key(job.id)]
    args: list[Any] = [job.serializer.dumps(job.meta), completes_for_s or "", new_text, event, MAX_EVENTS]
    args += [job.get_result_ttl(DEFAULT_RESULT_TTL), "start" if starting else ""]
    for counter in counters:
        keys.append(counter.key)
        args += [counter.ttl_s or 0, len(counter.amounts), *chain.from_iterable(counter.amounts.items())]
    return keys, args


def _save(job: Job, **changes: Any) -> None:
    keys, args = _save_call(job, **changes)
    if not scripts.registered(job.connection, scripts.GUARDED_SAVE)(keys=keys, args=args):
        _adopt_winner(job)


def _adopt_winner(job: Job) -> NoReturn:
    # Adopt the winner's record, so RQ's own later saves of this job keep it.
    job.meta = job.get_meta(refresh=True)
    raise Superseded(job.id)


def start_new_run(job: Job, *, max_attempts: int) -> None:
    """Make an ended job's next run a fresh one: a new deadline and attempt budget, no old
    error, result, cancel or webhook, an empty event stream, its end announced afresh and
    its completion open again (a document job that succeeded with failed steps re-runs
    those). `attempts` keeps counting: it is every LLM call made for the job. The caller
    saves the job."""
    record = JobRecord(job)
    del record.deadline_at
    record.canceled_at = record.error = record.result = record.next_attempt_at = record.webhook = None
    record.attempt_limit = record.attempts + max_attempts
    for step in record.steps:  # a document job's new run re-runs only the steps that did not succeed
        if step["status"] != STEP_SUCCEEDED:
            step["status"], step["error"] = STEP_PENDING, None
    job.number_of_retries = 0  # RQ's own count, checked against the Retry a task returns
    with job.connection.pipeline(transaction=False) as pipe:
        pipe.delete(cancel_key(job.id), events_key(job.id), announced_key(job.id), completed_key(job.id))
        metrics.JOB_RETRIES.inc(pipe, queue=job.origin, reason="requested")
        pipe.execute()


def start_attempt(job: Job, *, max_attempts: int = Settings.max_attempts, _wait_observed: bool = False) -> float:
    """Count the attempt, reset its progress, and return the job's deadline (epoch s); one
    round trip, which also observes how long the job waited in its queue.

    The deadline is fixed at the first attempt: `timeout_s` bounds the whole job. A job
    whose announced end is `failed` was re-queued behind our back (rq-dashboard's requeue,
    RQ's own `FailedJobRegistry.requeue`): it starts a new run, as `POST /retry` would.
    Not so a `canceled` one: a worker that dequeued a job just as it was canceled in the
    queue must still see the cancel request and stop (re-running a canceled job is
    `POST /retry`'s job). A completed job stays completed: the save is refused. A budgeted
    job's new run reserves its worst case again, or fails (RunRefused).
    """
    record = JobRecord(job)
    before = dict(job.meta)
    record.attempts += 1
    if record.deadline_at is None:
        record.deadline_at = time.time() + record.timeout_s
    deadline_at = record.deadline_at
    record.text, record.output_tokens = "", 0
    record.error = record.result = record.next_attempt_at = None
    keys, args = _save_call(job, starting=True)
    with job.connection.pipeline(transaction=False) as pipe:
        scripts.add_to_pipeline(pipe, scripts.GUARDED_SAVE, keys, args)
        if not _wait_observed and job.enqueued_at is not None:  # None only for a job never queued
            metrics.QUEUE_WAIT.observe(pipe, (now() - job.enqueued_at).total_seconds(), queue=job.origin)
        saved, *_ = pipe.execute()
    if saved == 0:
        _adopt_winner(job)
    if saved == 2:
        job.meta = before
        start_new_run(job, max_attempts=max_attempts)
        if not budgets.reserve_again(job):  # a new run reserves its worst case, as POST /retry does
            error = budgets.no_room_error(job, "a run requeued by an operator")
            record_error(job, error)
            raise RunRefused(error)
        return start_attempt(job, max_attempts=max_attempts, _wait_observed=True)
    return deadline_at


def undo_attempt(job: Job, error: JobError, next_attempt_at: float) -> None:
    """The call was refused by the provider's rate limit or overload, before any of it
    was billed: it does not count against the job's attempts. The caller puts the job back
    in its queue, where it waits (showing `error`) until about `next_attempt_at`."""
    record = JobRecord(job)
    record.attempts -= 1
    record.error, record.next_attempt_at = error, next_attempt_at
    _save(job)


class ProgressRecorder:
    """Collects a running attempt's streamed deltas: the text, and every other block's
    pieces (thinking, tool input, citations) with their block index. The worker writes what
    is new, for all its running jobs at once, in one pipeline per tick (`flush_progress`)."""

    def __init__(self, job: Job):
        self.job = job
        self._parts: list[str] = []
        self._published = 0  # parts already written
        self._deltas: list[dict[str, Any]] = []  # other deltas not yet written, runs of one block merged
        self.chunks = 0  # a delta is usually one token; the exact count replaces this at the end

    def add(self, text: str) -> None:
        self._parts.append(text)
        self.chunks += 1

    def add_delta(self, index: int, delta: dict[str, Any]) -> None:
        """One delta of the reply, as the provider sent it."""
        kind = delta.get("type")
        if kind == "text_delta":
            self.add(delta["text"])
            return
        self.chunks += 1
        joined = MERGED_DELTA_FIELDS.get(kind or "")
        last = self._deltas[-1] if self._deltas else None
        if joined and last is not None and last["block"] == index and last["type"] == kind:
            last[joined] += delta[joined]
        else:
            self._deltas.append({"block": index, **delta})

    @property
    def text(self) -> str:
        return "".join(self._parts)

    @property
    def has_unwritten(self) -> bool:
        return self._published < len(self._parts) or bool(self._deltas)

    def unwritten(self) -> tuple[str, list[dict[str, Any]]]:
        """The text and the other deltas not yet written; counted as written from here on."""
        new_text = "".join(self._parts[self._published :])
        self._published = len(self._parts)
        deltas, self._deltas = self._deltas, []
        return new_text, deltas


# A run of these deltas of one block goes out as one, its pieces joined.
MERGED_DELTA_FIELDS = {"thinking_delta": "thinking", "input_json_delta": "partial_json"}


def flush_progress(connection: Redis, recorders: Sequence[ProgressRecorder]) -> list[ProgressRecorder]:
    """Write each recorder's new text (appended to the job's live text, and as a progress
    event) in one round trip; returns the recorders whose job another run has completed."""
    written: list[ProgressRecorder] = []
    with connection.pipeline(transaction=False) as pipe:
        for recorder in recorders:
            if not recorder.has_unwritten:
                continue
            JobRecord(recorder.job).output_tokens = recorder.chunks
            keys, args = _save_call(recorder.job, recorder=recorder)
            scripts.add_to_pipeline(pipe, scripts.GUARDED_SAVE, keys, args)
            written.append(recorder)
        if not written:
            return []
        answers = pipe.execute()
    return [recorder for recorder, saved in zip(written, answers, strict=True) if not saved]


def call_counters(job: Job, usage: Usage, cost: float | None, *, retention_days: int) -> list[HashIncrements]:
    """What an attempt that ended without a result adds to the usage and the metrics: the
    provider bills a call cut short (failed mid-stream, canceled, timed out) all the same."""
    if not any(token_counts(usage).values()):
        return []
    record = JobRecord(job)
    model = record.model
    return [
        job_usage(record.client, model, usage, cost, retention_days, completed=False),
        metrics.llm_usage(model, usage, cost),
        *spend_increments(record.client, cost),
    ]


def record_result(
    job: Job,
    *,
    message: dict[str, Any],
    text: str,
    output: Any,
    usage: Usage,
    cost_usd: float | None,
    keep_for_s: int,
    usage_retention_days: int,
    recorder: ProgressRecorder | None = None,
) -> Mapping[str, Any]:
    """Complete the job (once), adding it to its client's usage counters and the metrics;
    returns what RQ keeps as the job's return value."""
    record = JobRecord(job)
    result: MessageResult = {
        "message": message, "output": output, "stop_reason": message.get("stop_reason"), "usage": usage,
        "cost_usd": cost_usd,
    }  # fmt: skip
    record.text, record.output_tokens, record.result = text, usage["output_tokens"], result
    model = record.model
    counters = (
        job_usage(record.client, model, usage, cost_usd, usage_retention_days),
        metrics.llm_usage(model, usage, cost_usd),
        *spend_increments(record.client, cost_usd),
    )
    _save(job, completes_for_s=keep_for_s, counters=counters, recorder=recorder)
    completed = job_result(job)
    assert completed is not None  # its result was set above
    return completed


def record_progress(
    job: Job,
    event: dict[str, Any],
    *,
    counters: Sequence[HashIncrements] = (),
    completes_for_s: int | None = None,
) -> None:
    """Save the job's meta with a progress event of its own (a document job's step
    moved), adding `counters` (the usage of the calls it made) in the same write;
    `completes_for_s`: this save completes the job."""
    _save(job, event=json.dumps(event), counters=counters, completes_for_s=completes_for_s)


def record_retry(
    job: Job,
    error: JobError,
    next_attempt_at: float,
    *,
    counters: Sequence[HashIncrements] = (),
    recorder: ProgressRecorder | None = None,
) -> None:
    """The attempt failed and another is due at `next_attempt_at`; the error stays visible meanwhile."""
    record = JobRecord(job)
    record.error, record.next_attempt_at = error, next_attempt_at
    if recorder is not None:
        record.output_tokens = recorder.chunks
    _save(job, counters=counters, recorder=recorder)


def record_error(
    job: Job,
    error: JobError,
    *,
    canceled: bool = False,
    counters: Sequence[HashIncrements] = (),
    recorder: ProgressRecorder | None = None,
    completes_for_s: int | None = None,
) -> None:
    """The job ends without a result, keeping the text its attempt streamed before it
    stopped; `completes_for_s`: no other run may change it after this (one ended outside a
    run: a batch-tier job canceled while its provider batch runs)."""
    record = JobRecord(job)
    record.error = error
    if recorder is not None:
        record.text, record.output_tokens = recorder.text, recorder.chunks
    if canceled:
        record.canceled_at = time.time()
    _save(job, counters=counters, recorder=recorder, completes_for_s=completes_for_s)
