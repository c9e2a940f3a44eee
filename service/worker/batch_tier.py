"""The batch tier's loop in a worker process: collect, send, poll, fan out.

Every second: the worker holding the collector lock takes the batch queue's jobs into a new
provider batch once the oldest has waited BATCH_COLLECT_S or BATCH_MAX_REQUESTS wait; then
every worker renews the leases of the provider batches it advances and takes those whose
lease lapsed (their worker died), and advances each one it holds, one step at a time:

- not created: its jobs' requests are sent whole as one provider batch (`custom_id` = the
  job id; over the provider's 256 MB, the rest go back to the queue). The record says a
  create was sent before it is sent: a worker taking over such a record first looks for
  the provider batch among those the provider made since (listed after the newest one
  recorded before the create; of its size; held by no record). It adopts the one it finds;
  if it finds several it cannot tell apart, it adopts the oldest and opens a reader record
  for each other one, so that every one is read (a result ends a job only while the job
  is running in the adopted one, the first result to come wins, the others are dropped and
  counted); if it finds none it sends the jobs again (counted). A create the provider
  refuses leaves the jobs queued for the next try, with back-off.
- created: polled every BATCH_POLL_S (back-off on errors); once all its jobs are canceled
  it is canceled at the provider (not an adopted one: it may be another program's); once
  ended, its results are streamed into the jobs, which end by the same code as a job that
  streamed its reply; then, once its readers have read theirs, the jobs left without a
  result go into a later provider batch and the record goes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus

from service.bug_reports import report_bug
from service.config import Settings
from service.jobs.observability import metrics
from service.jobs.push.events import announce_end
from service.jobs.running import provider_batches
from service.jobs.running.progress import Superseded
from service.jobs.running.provider_batches import OpenBatch
from service.jobs.storage.keys import PROVIDER_CALLS_QUEUE_KEY, provider_batch_key, provider_call_key
from service.jobs.storage.lookup import fetch_jobs
from service.llm.batches import MAX_BYTES, BatchesClient, BatchResult, ProviderBatch
from service.llm.errors import LLMError
from service.tasks import batch_tier
from service.tasks.outcomes import JobFailed
from service.tasks.runtime import TaskRuntime
from service.worker import executions
from service.worker.executions import Running

log = logging.getLogger(__name__)

STEP_S = 1.0  # how often the loop collects, renews its leases and advances its provider batches
FAN_OUT_CHUNK = 100  # results read into their jobs per round trip of reads
SEND_CHUNK = 500  # jobs read (to send them, to mark them sent) per round trip
MAX_BACKOFF_S = 300.0  # the longest wait after failed creates or polls
# A crashed create's batch is looked for among those the provider made after the newest
# batch recorded before it (the provider's order, no clock). With none recorded in the last
# day, among those made since its `creating_at` less this much (the provider's clock may be
# behind ours). Kept small: every batch found is read (another program's too, its results
# dropped), and the jobs wait for them all.
CLOCK_SLACK_S = 2.0
BYTES_MARGIN = 1024 * 1024  # the create's own JSON around the requests


class BatchTierLoop:
    def __init__(
        self,
        connection: Redis,
        settings: Settings,
        batches: BatchesClient,
        runtime: TaskRuntime,
        queue: Queue,
        name: str,
    ):
        self.connection = connection
        self.settings = settings
        self.batches = batches
        self.runtime = runtime
        self.queue = queue
        self.name = name  # the worker's: it owns leases under it
        self.next_step_at: dict[str, float] = {}  # our id -> monotonic time of its next poll or try
        self.failures: dict[str, int] = {}  # our id -> failed creates or polls in a row
        self.advancing: dict[str, asyncio.Task] = {}

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.step()
            except RedisError as exc:
                log.warning("batch tier: Redis error (%s); carrying on", exc)
            except Exception as exc:  # a bug must not stop the batch tier
                log.exception("batch tier: a step failed; carrying on")
                report_bug(exc, loop="batch_tier")
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), STEP_S)
        # A step under way is abandoned: its record's lease lapses, and it is taken over.
        for task in self.advancing.values():
            task.cancel()
        await asyncio.gather(*self.advancing.values(), return_exceptions=True)

    async def step(self) -> None:
        self._collect()
        open_ids = [local_id for local_id, _ in provider_batches.open_batches(self.connection)]
        for local_id in provider_batches.hold(self.connection, open_ids, self.name):
            if local_id in self.advancing or time.monotonic() < self.next_step_at.get(local_id, 0.0):
                continue
            self.advancing[local_id] = asyncio.create_task(self._advance(local_id))

    # --- collect ---------------------------------------------------------------------------

    def _collect(self) -> None:
        """Open provider batches while the queue's head has waited long enough or a full
        batch waits."""
        settings = self.settings
        if not provider_batches.take_collector_lock(self.connection, self.name, STEP_S):
            return
        while True:
            waiting = provider_batches.waiting(self.connection, self.queue.key)
            if waiting < settings.batch_max_requests:
                since = provider_batches.oldest_waiting_since(self.connection, self.queue.key)
                if since is None or time.time() - since < settings.batch_collect_s:
                    return
            opened = provider_batches.collect(self.connection, self.queue.key, settings.batch_max_requests, self.name)
            if opened is None:
                return
            log.info("batch tier: collected jobs into provider batch record %s", opened.local_id)

    # --- advance one provider batch --------------------------------------------------------

    async def _advance(self, local_id: str) -> None:
        try:
            await self._advance_one(local_id)
        finally:
            self.advancing.pop(local_id, None)

    async def _advance_one(self, local_id: str) -> None:
        try:
            batch = provider_batches.load(self.connection, local_id)
            if batch is None:
                self._forget(local_id)
            elif batch.provider_id is None:
                await self._send(batch)
            else:
                await self._poll(batch)
        except RedisError as exc:
            log.warning("batch tier: Redis error on %s (%s); its lease lapses unless renewed", local_id, exc)
        except Exception as exc:
            log.exception("batch tier: advancing %s failed", local_id)
            report_bug(exc, loop="batch_tier", provider_batch=local_id)
            self._back_off(local_id)

    def _forget(self, local_id: str) -> None:
        self.next_step_at.pop(local_id, None)
        self.failures.pop(local_id, None)

    def _back_off(self, local_id: str) -> None:
        failures = self.failures[local_id] = self.failures.get(local_id, 0) + 1
        wait = min(MAX_BACKOFF_S, self.settings.batch_poll_s * 2 ** (failures - 1))
        self.next_step_at[local_id] = time.monotonic() + wait

    def _poll_later(self, local_id: str) -> None:
        self.failures.pop(local_id, None)
        self.next_step_at[local_id] = time.monotonic() + self.settings.batch_poll_s

    async def _send(self, batch: OpenBatch) -> None:
        ids = provider_batches.job_ids(self.connection, batch.local_id)
        if batch.creating_at is not None and await self._adopt_orphans(batch, ids):
            return
        lines = self._request_lines(ids)
        kept = {line_id for line_id, _ in lines}
        provider_batches.drop_jobs(self.connection, batch.local_id, [i for i in ids if i not in kept])
        if not lines:
            self._close(batch)
            return
        lines = self._within_bytes(batch, lines)
        if batch.creating_at is not None:  # the last create may have made a batch we could not find
            metrics.BATCH_JOBS_SENT_AGAIN.inc(self.connection, len(lines))
        provider_batches.note_create(self.connection, batch.local_id)
        sent_ids, payload = [line_id for line_id, _ in lines], [line for _, line in lines]
        del lines  # the create empties payload: the requests are held once while they are sent
        try:
            created = await self.batches.create(payload)
        except LLMError as exc:
            self._refused(batch, sent_ids, exc)
            return
        self._record(batch, created, sent_ids)

    def _request_lines(self, ids: list[str]) -> list[tuple[str, bytes]]:
        """Each waiting job's (or document call's) line of the provider batch, as JSON: read
        SEND_CHUNK jobs at a time, so that a full batch never holds 10,000 jobs in memory."""
        lines: list[tuple[str, bytes]] = []
        jobs = [i for i in ids if not provider_batches.is_call(i)]
        for start in range(0, len(jobs), SEND_CHUNK):
            for job in fetch_jobs(self.connection, jobs[start : start + SEND_CHUNK]):
                if job is not None and batch_tier.is_waiting(job):
                    lines.append((job.id, _json(batch_tier.provider_request(job))))
        calls = [i for i in ids if provider_batches.is_call(i)]
        for call_id, params in zip(calls, provider_batches.call_params(self.connection, calls), strict=True):
            if params is not None:
                lines.append((call_id, _json({"custom_id": call_id, "params": params})))
        return lines

    def _within_bytes(self, batch: OpenBatch, lines: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """The lines that fit in one provider batch; the rest go back to the queue's head (a
        document call: to its queue, where it is taken next)."""
        size = BYTES_MARGIN
        for i, (_, line) in enumerate(lines):
            size += len(line) + 1
            if size > MAX_BYTES and i:
                self._put_back(batch, [line_id for line_id, _ in lines[i:]])
                return lines[:i]
        return lines

    def _put_back(self, batch: OpenBatch, ids: list[str]) -> None:
        calls = [i for i in ids if provider_batches.is_call(i)]
        jobs = [i for i in ids if not provider_batches.is_call(i)]
        provider_batches.drop_jobs(self.connection, batch.local_id, jobs, back_to=self.queue.key)
        provider_batches.drop_jobs(self.connection, batch.local_id, calls, back_to=PROVIDER_CALLS_QUEUE_KEY)

    def _refused(self, batch: OpenBatch, ids: list[str], error: LLMError) -> None:
        """The create failed: its jobs wait (queued) for the next try. If the provider answered,
        it made no batch; if it did not, it may have (the next try looks for it first)."""
        log.warning("batch tier: create of %s (%d requests) failed: %s", batch.local_id, len(ids), error)
        if error.status_code is not None:
            self.connection.hdel(provider_batch_key(batch.local_id), "creating_at")
        if error.status_code == 413 and len(ids) > 1:  # too large after all: half goes back to the queue
            self._put_back(batch, ids[len(ids) // 2 :])
        self._back_off(batch.local_id)

    def _record(self, batch: OpenBatch, created: ProviderBatch, ids: list[str], *, adopted: bool = False) -> None:
        """The provider batch exists: recorded, then its jobs marked sent (SEND_CHUNK at a time)."""
        fields = {"provider_id": created.id, "submitted_at": created.created_at.isoformat()}
        provider_batches.note(self.connection, batch.local_id, **fields, **({"adopted": 1} if adopted else {}))
        self._mark_sent(batch, ids, created)
        provider_batches.note(self.connection, batch.local_id, marked=1)
        metrics.PROVIDER_BATCHES_CREATED.inc(self.connection)
        log.info("batch tier: provider batch %s created with %d requests", created.id, len(ids))
        self._poll_later(batch.local_id)

    def _mark_sent(self, batch: OpenBatch, ids: list[str], created: ProviderBatch) -> None:
        """Mark the jobs sent; the record keeps their earliest deadline, when a poll looks for
        jobs past theirs."""
        jobs = [i for i in ids if not provider_batches.is_call(i)]
        earliest = math.inf
        for start in range(0, len(jobs), SEND_CHUNK):
            chunk = fetch_jobs(self.connection, jobs[start : start + SEND_CHUNK])
            earliest = min(earliest, batch_tier.mark_sent([job for job in chunk if job is not None], created))
        provider_batches.note(self.connection, batch.local_id, deadline_at=earliest)

    def _end_past_deadline(self, batch: OpenBatch) -> None:
        """A job may have a timeout_s shorter than the provider's 24 h: it fails at it."""
        assert batch.provider_id is not None
        jobs = [i for i in provider_batches.job_ids(self.connection, batch.local_id) if not provider_batches.is_call(i)]
        earliest = math.inf
        for start in range(0, len(jobs), SEND_CHUNK):
            chunk = fetch_jobs(self.connection, jobs[start : start + SEND_CHUNK])
            earliest = min(earliest, batch_tier.end_past_deadline(chunk, batch.provider_id))
        provider_batches.note(self.connection, batch.local_id, deadline_at=earliest)

    async def _adopt_orphans(self, batch: OpenBatch, ids: list[str]) -> bool:
        """A worker died after sending this record's create: the provider batches it may
        have made (made after the newest batch recorded before it, of this size, held by no
        record) are adopted: the oldest by this record, each other one by a reader record.
        False when there is none (the jobs are sent again)."""
        assert batch.creating_at is not None
        if batch.newer_than is None:
            floor = batch.creating_at - CLOCK_SLACK_S
        else:  # only a bound, should the provider have deleted the one it is newer than
            floor = batch.creating_at - provider_batches.RECORDED_KEPT_S
        try:
            made = await self.batches.made_since(batch.newer_than, datetime.fromtimestamp(floor, UTC))
        except LLMError as exc:
            log.warning("batch tier: cannot list provider batches (%s); trying later", exc)
            self._back_off(batch.local_id)
            return True
        known = provider_batches.known_provider_ids(self.connection)
        found = sorted((b for b in made if b.id not in known and b.requests == len(ids)), key=lambda b: b.created_at)
        if not found:
            return False
        adopted, *others = found
        if others:
            provider_batches.open_readers(
                self.connection, batch, (adopted.id, adopted.created_at.isoformat()),
                [(b.id, b.created_at.isoformat()) for b in others], self.name,
            )  # fmt: skip
            log.warning(
                "batch tier: a create whose worker died may have made any of %s: all are read",
                ", ".join(b.id for b in found),
            )
        log.warning("batch tier: adopted provider batch %s of a create whose worker died", adopted.id)
        self._record(batch, adopted, ids, adopted=True)
        metrics.PROVIDER_BATCHES_ADOPTED.inc(self.connection, len(found))
        return True

    async def _poll(self, batch: OpenBatch) -> None:
        assert batch.provider_id is not None
        if batch.read:  # its results are in; its readers' may still come
            self._wait_for_readers(batch)
            return
        jobs_in: str | None = batch.provider_id  # the provider batch whose jobs its results end
        if batch.holder is not None:  # a reader: its holder's, once its jobs show it
            holder = provider_batches.load(self.connection, batch.holder)
            if holder is not None and not holder.marked:
                self._poll_later(batch.local_id)
                return
            jobs_in = holder.provider_id if holder is not None else None
        try:
            state = await self.batches.retrieve(batch.provider_id)
            if not batch.marked:  # its worker died while marking its jobs sent
                self._mark_sent(batch, provider_batches.job_ids(self.connection, batch.local_id), state)
                provider_batches.note(self.connection, batch.local_id, marked=1)
            if state.ended:
                await self._fan_out(batch, jobs_in)
                return
            if time.time() >= batch.deadline_at:
                self._end_past_deadline(batch)
            if not batch.cancel_sent and not batch.adopted and self._all_ended(batch):
                await self.batches.cancel(batch.provider_id)
                provider_batches.note(self.connection, batch.local_id, cancel_sent=1)
                log.info("batch tier: every job of %s was canceled: canceled it", batch.provider_id)
        except LLMError as exc:
            if exc.status_code == 404:  # deleted (another program's, say, once it ended): nothing to read
                log.warning("batch tier: provider batch %s is gone: %s", batch.provider_id, exc)
                self._read(batch)
                return
            log.warning("batch tier: polling %s failed: %s", batch.provider_id, exc)
            self._back_off(batch.local_id)
            return
        self._poll_later(batch.local_id)

    def _all_ended(self, batch: OpenBatch) -> bool:
        """Every job of it has ended (canceled), and no document call of it is waited for;
        read SEND_CHUNK at a time, up to the first one still running."""
        ids = provider_batches.job_ids(self.connection, batch.local_id)
        running = JobStatus.STARTED.value.encode()
        for start in range(0, len(ids), SEND_CHUNK):
            with self.connection.pipeline(transaction=False) as pipe:
                for line_id in ids[start : start + SEND_CHUNK]:
                    if provider_batches.is_call(line_id):
                        pipe.exists(provider_call_key(line_id))
                    else:
                        pipe.hget(Job.key_for(line_id), "status")
                if any(answer == running or answer == 1 for answer in pipe.execute()):
                    return False
        return True

    # --- fan out ---------------------------------------------------------------------------

    async def _fan_out(self, batch: OpenBatch, jobs_in: str | None) -> None:
        """Stream the results into the jobs running in provider batch `jobs_in` (any order),
        then close the record (a record with readers waits for them first). A worker that
        dies midway leaves the record open: its next owner reads every result again, and the
        jobs already ended are left as they are."""
        assert batch.provider_id is not None
        read = 0
        chunk: list[BatchResult] = []
        async for result in self.batches.results(batch.provider_id):
            chunk.append(result)
            if len(chunk) >= FAN_OUT_CHUNK:
                self._end_jobs(batch.provider_id, jobs_in, chunk)
                read += len(chunk)
                chunk = []
                provider_batches.hold(self.connection, [batch.local_id], self.name)
        self._end_jobs(batch.provider_id, jobs_in, chunk)
        log.info("batch tier: provider batch %s read into its jobs (%d results)", batch.provider_id, read + len(chunk))
        self._read(batch)

    def _read(self, batch: OpenBatch) -> None:
        """Every result of its provider batch is read: a reader closes (the record it reads
        for sends the jobs left again), another record once its readers have closed."""
        if batch.holder is not None:
            self._close(batch)
            return
        provider_batches.note(self.connection, batch.local_id, read=1)
        self._wait_for_readers(batch)

    def _wait_for_readers(self, batch: OpenBatch) -> None:
        """Once no reader of it is open, the jobs still running in it had no result from
        any provider batch: they go into a later one, and the record goes."""
        if provider_batches.any_open(self.connection, batch.readers):
            if time.time() >= batch.deadline_at:
                self._end_past_deadline(batch)
            self._poll_later(batch.local_id)
            return
        self._unanswered(batch)
        self._close(batch)

    def _close(self, batch: OpenBatch) -> None:
        provider_batches.close(self.connection, batch)
        self._forget(batch.local_id)

    def _unanswered(self, batch: OpenBatch) -> None:
        """What the provider gave no result for (it should not happen): a job still in the
        batch goes into a later one; a document call is answered with the error."""
        assert batch.provider_id is not None
        ids = provider_batches.job_ids(self.connection, batch.local_id)
        for call_id in [i for i in ids if provider_batches.is_call(i)]:  # those still waiting, unanswered
            provider_batches.answer_call(self.connection, call_id, batch_tier.call_answer(NO_RESULT_LINE))
        jobs = [i for i in ids if not provider_batches.is_call(i)]
        for start in range(0, len(jobs), SEND_CHUNK):
            for job in fetch_jobs(self.connection, jobs[start : start + SEND_CHUNK]):
                if job is not None and batch_tier.in_batch(job, batch.provider_id):
                    batch_tier.send_again(job, NO_RESULT, self.queue)

    def _end_jobs(self, provider_id: str, jobs_in: str | None, results: list[BatchResult]) -> None:
        """End each job running in provider batch `jobs_in` by its result (from provider
        batch `provider_id`), and answer each document call still waiting; drop (and count)
        every other result."""
        dropped: Counter[batch_tier.DropReason] = Counter()
        for call in [result for result in results if provider_batches.is_call(result.custom_id)]:
            if not provider_batches.answer_call(self.connection, call.custom_id, batch_tier.call_answer(call)):
                dropped["ended"] += 1
        results = [result for result in results if not provider_batches.is_call(result.custom_id)]
        jobs = fetch_jobs(self.connection, [result.custom_id for result in results])
        for job, result in zip(jobs, results, strict=True):
            if job is None:
                dropped["unknown"] += 1
            elif jobs_in is not None and batch_tier.in_batch(job, jobs_in):
                self._end(job, result)
            else:
                dropped[batch_tier.drop_result(job, result, provider_id, self.runtime)] += 1
        for reason, count in dropped.items():
            metrics.BATCH_RESULTS_DROPPED.inc(self.connection, count, reason=reason)

    def _end(self, job: Job, result: BatchResult) -> None:
        """The job's end, by the worker's own steps (as `AsyncWorker._perform` takes them)."""
        entry = Running(job, self.queue, Execution(uuid.uuid4().hex, job.id, self.connection, self.name))
        try:
            value = batch_tier.record_outcome(job, result, self.runtime, self.queue)
        except JobFailed as exc:
            claimed = executions.finish_failed(entry, self.name, str(exc), publishes_end=True)
        except Superseded:
            executions.finish_superseded(entry)
            return
        else:
            if value is None:  # back in the batch queue
                return
            claimed = executions.finish_succeeded(entry, self.name, value, publishes_end=True)
        announce_end(job, claimed=claimed)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


NO_RESULT = LLMError("api_error", "the provider batch ended without a result for this request", retryable=True)
NO_RESULT_LINE = BatchResult("", None, NO_RESULT)
