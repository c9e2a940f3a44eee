"""One worker process: RQ jobs as asyncio tasks on one event loop.

- Slots: up to WORKER_CONCURRENCY LLM jobs at once (a share never given to `low`), and
  WEBHOOK_CONCURRENCY deliveries beside them, so a slow receiver never takes an LLM slot.
  A free slot takes from `high`, then `default`, then `low` (in that order, for as many
  jobs as there are free slots; the take claims them, storage/claims.py, so a job taken
  and never started is found again); no job is taken before a slot is free for it.
- Before an LLM job is taken, the provider gate (shared by every process) must admit it.
- One tick every TICK_S for all running jobs: new progress is written, cancel requests
  are read (one MGET), and every HEARTBEAT_S the worker, each execution and each lease
  are renewed (one pipeline). Jobs waiting to retry are moved to their queues when due.
- RQ's stop-job command (pubsub) stops a job's task; SIGTERM stops taking jobs, lets
  running ones finish within WORKER_SHUTDOWN_GRACE_S, then puts the rest back at the
  front of their queues; a second signal hurries.
- Redis away: the loops wait and carry on. A job whose writes fail is left to the
  scheduler's recovery (its lease lapses), as if its process had died.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import logging
import math
import signal
import time
import traceback
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Retry, Worker
from rq.job import Job, JobStatus
from rq.worker import WorkerStatus

from service import tracing
from service.bug_reports import report_bug
from service.config import Settings
from service.jobs.observability import metrics
from service.jobs.push.events import announce_end
from service.jobs.running.progress import Superseded, flush_progress
from service.jobs.running.provider_gate import ProviderGate, RateLimitHeaders
from service.jobs.storage import claims
from service.jobs.storage.connection import WORKER_BUDGET, async_connection, worker_connection
from service.jobs.storage.keys import cancel_key
from service.jobs.storage.lookup import restore_job
from service.jobs.storage.queues import BATCH_QUEUE, CLIENT_TASKS, PRIORITIES, SERIALIZER, WEBHOOK_QUEUE, make_queues
from service.jobs.storage.record import JobRecord
from service.jobs.storage.sentinel import primary_of
from service.llm.client import LLMClient
from service.logs import log_context
from service.tasks.outcomes import JobFailed, Requeue
from service.tasks.runtime import CANCELED, STOPPED, SUPERSEDED, StopReason, TaskRuntime
from service.worker import executions
from service.worker.batch_tier import BatchTierLoop
from service.worker.executions import Running
from service.worker.job_traces import traced_run
from service.worker.scheduled import promote_due_jobs
from service.worker.tasks import TASKS, UNKNOWN_TASK, unknown_task_error

log = logging.getLogger(__name__)

TICK_S = 0.25  # progress writes and cancel checks; a cancel takes effect within this
MIN_TICK_S = 0.02  # with PROGRESS_INTERVAL_S lower than TICK_S, the tick follows it down to this
HEARTBEAT_S = 5.0  # worker, executions and leases
WORKER_TTL_S = 20  # the worker's key outlives a missed heartbeat or two
PROMOTE_S = 1.0  # how often due retries are moved to their queues
# With every queue empty, the longest wait for a job (`_until_a_job_waits`): how soon a slot
# freed while only the reserve was free widens the wait to `low`.
WATCH_S = 0.5
COMMANDS_WAIT_S = 1.0  # one wait for a command on the pubsub channel
YOUNG_GC_THRESHOLD = 20_000  # allocations between young collections (Python's default: 700)


@dataclass
class Pool:
    """Slots for one kind of work, taken from its own queues: LLM jobs (`gated`: each holds
    a permit of the provider gate) or webhook deliveries, so a slow receiver never takes an
    LLM slot."""

    name: str  # in logs and bug reports
    queues: list[Queue]  # highest priority first
    capacity: int
    reserve: int = 0  # slots never given to the lowest priority
    gated: bool = False
    in_use: int = 0
    freed: asyncio.Event = field(default_factory=asyncio.Event)
    by_key: dict[str, Queue] = field(init=False)
    above_low: list[str] = field(init=False)  # the keys of the queues the reserve may take from

    def __post_init__(self) -> None:
        self.by_key = {queue.key: queue for queue in self.queues}
        self.above_low = [queue.key for queue in self.queues if queue.name != PRIORITIES[-1]]

    def wanted(self, free: int) -> tuple[list[str], int]:
        """The queues to take from and how many jobs, with `free` slots: the reserved slots
        are never given to `low`, so a flood of low work cannot delay high (or default) jobs,
        which still take every slot when they are what waits."""
        if self.above_low and free <= self.reserve:
            return self.above_low, free
        return list(self.by_key), free - self.reserve


class AsyncWorker:
    def __init__(self, settings: Settings, queue_names: list[str], *, name: str | None = None):
        self.settings = settings
        self.connection = worker_connection(settings)
        # Blocking reads (the queues' watches, the pubsub) and the takes must not block the loop:
        # they get an asyncio client, whose reads are bounded too (a pubsub waits with a timeout
        # of its own).
        self.blocking = async_connection(settings, WORKER_BUDGET)
        self.queues = make_queues(self.connection, tuple(queue_names))
        self.rq_worker = Worker(
            list(self.queues.values()), connection=self.connection, serializer=SERIALIZER,
            worker_ttl=WORKER_TTL_S, name=name,
        )  # fmt: skip
        self.llm_queues = [self.queues[n] for n in PRIORITIES if n in self.queues]
        high_reserve = min(
            math.floor(settings.worker_concurrency * settings.worker_high_reserve), settings.worker_concurrency - 1
        )
        self.llm_pool = Pool("llm", self.llm_queues, settings.worker_concurrency, reserve=high_reserve, gated=True)
        self.webhook_pool = Pool(
            "webhooks",
            [self.queues[WEBHOOK_QUEUE]] if WEBHOOK_QUEUE in self.queues else [],
            settings.webhook_concurrency,
        )
        self.running: dict[str, Running] = {}
        self.watches: dict[str, asyncio.Task] = {}  # a queue key's wait for a job (_until_a_job_waits)
        self.stopping = asyncio.Event()
        self.hurry = asyncio.Event()
        self.threads = ThreadPoolExecutor(settings.webhook_concurrency + 1, thread_name_prefix="blocking")
        # One client (one connection pool sized to the slots) for every call of this process;
        # none for a worker of webhook deliveries alone, which may have no API key.
        llm = (
            LLMClient(
                read_timeout_s=settings.llm_read_timeout_s,
                max_connections=settings.worker_concurrency,
                on_response=lambda headers: self.gate.report_answer(RateLimitHeaders.parse(headers)),
            )
            if self.llm_queues or BATCH_QUEUE in self.queues
            else None
        )
        self.gate = ProviderGate(
            self.connection, llm.api_key if llm else None, process=self.rq_worker.name,
            max_in_flight=settings.llm_max_in_flight, request_margin=settings.llm_ratelimit_request_margin,
            token_margin=settings.llm_ratelimit_token_margin,
        )  # fmt: skip
        self.gate_wait_s = 0.0
        self.gate_closed_until = 0.0  # as the tick last read it, for /metrics
        self.runtime = TaskRuntime(self.connection, settings, llm, self.gate)
        # Batch-tier jobs are not dequeued one by one: the loop sends them in provider batches.
        self.batch_tier = (
            BatchTierLoop(
                self.connection, settings, llm.batches(), self.runtime, self.queues[BATCH_QUEUE], self.rq_worker.name
            )
            if llm is not None and BATCH_QUEUE in self.queues
            else None
        )

    # --- life cycle ----------------------------------------------------------------------

    async def run(self, *, burst: bool = False) -> None:
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            (self.hurry if signals > 1 else self.stopping).set()
            log.info("worker %s: %s", self.rq_worker.name, "hurrying" if signals > 1 else "stopping")

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await self._until_registered()
        # Everything built so far (modules, the SDK's models, clients) lives as long as the
        # process: frozen, a full collection no longer walks its ~180k objects (~0.25 s with
        # every stream waiting). Hundreds of running jobs allocate fast: young collections
        # every YOUNG_GC_THRESHOLD allocations, not Python's 700 (bench/RESULTS.md: a fifth
        # of the worker's CPU in case c went to the collector).
        gc.freeze()
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        loops = [asyncio.create_task(self._tick()), asyncio.create_task(self._commands())]
        loops += [asyncio.create_task(self._admit(p, burst)) for p in (self.llm_pool, self.webhook_pool) if p.queues]
        if self.batch_tier is not None and not burst:
            loops.append(asyncio.create_task(self.batch_tier.run(self.stopping)))
        log.info("worker %s: serving %s", self.rq_worker.name, ", ".join(self.queues))
        if burst:
            await asyncio.gather(*loops[2:])
            self.stopping.set()
        await self.stopping.wait()
        await self._drain()
        for task in (*loops, *self.watches.values()):
            task.cancel()
        await asyncio.gather(*loops, *self.watches.values(), return_exceptions=True)
        with _quietly("register its death"):
            self.rq_worker.register_death()
        if self.runtime.llm is not None:
            await self.runtime.llm.aclose()
        await self.blocking.aclose()
        self.threads.shutdown(wait=False, cancel_futures=True)

    async def _until_registered(self) -> None:
        while True:
            try:
                self._register()
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("Redis not reachable (%s); waiting", exc)
                await asyncio.sleep(1)

    def _register(self) -> None:
        # A key under our name is our own: restored from the AOF after a restart, or made
        # by a heartbeat's HSET after Redis lost it; RQ refuses to register over it.
        self.connection.delete(self.rq_worker.key)
        self.rq_worker.register_birth()

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period (or until a second signal), then
        put the rest back at the front of their queues."""
        tasks = [entry.task for entry in self.running.values() if entry.task is not None]
        if tasks and not self.hurry.is_set():
            grace = self.settings.worker_shutdown_grace_s
            log.info("worker %s: waiting up to %.0f s for %d jobs", self.rq_worker.name, grace, len(tasks))
            all_done = asyncio.gather(*tasks, return_exceptions=True)
            await _first(asyncio.shield(all_done), self.hurry.wait(), asyncio.sleep(grace))
        left = [entry.task for entry in self.running.values() if entry.task is not None and not entry.task.done()]
        for task in left:
            task.cancel()  # no stop reason: it goes back to its queue
        await asyncio.gather(*left, return_exceptions=True)

    # --- taking jobs ---------------------------------------------------------------------

    async def _admit(self, pool: Pool, burst: bool) -> None:
        """Take jobs for `pool`'s free slots, highest priority first, until stopping (a burst
        worker: until its queues are empty and its jobs done)."""
        while not self.stopping.is_set():
            if pool.in_use >= pool.capacity:
                pool.freed.clear()
                await _first(pool.freed.wait(), self.stopping.wait())
                continue
            try:
                if not await self._take(pool, burst):
                    return
            except RedisError as exc:
                log.warning("worker %s: Redis error while taking jobs (%s); retrying", self.rq_worker.name, exc)
                await _first(asyncio.sleep(1), self.stopping.wait())
            except Exception as exc:  # a bug must not stop the worker from taking jobs
                log.exception("worker %s: taking jobs failed; carrying on", self.rq_worker.name)
                report_bug(exc, loop="admit", pool=pool.name)
                await _first(asyncio.sleep(1), self.stopping.wait())

    async def _take(self, pool: Pool, burst: bool) -> bool:
        """Take (and start) as many jobs as `pool` has free slots for and the provider gate
        admits; False: a burst worker found nothing left to do."""
        keys, wanted = pool.wanted(pool.capacity - pool.in_use)
        if not await claims.any_waiting(self.blocking, keys):  # idle: neither gate nor take
            if burst and pool.in_use == 0:
                return False
            await self._until_a_job_waits(keys)
            return True
        granted = self._granted(pool, wanted)
        if not granted:
            await _first(asyncio.sleep(self.gate_wait_s), self.stopping.wait())
            return True
        key, job_ids = await claims.take(self.blocking, keys, granted)
        if pool.gated and len(job_ids) < granted:  # another worker took them first
            self.gate.release(granted - len(job_ids))
            if not job_ids:
                self.gate.release_probe()
        if job_ids:
            self._start(pool.by_key[key], job_ids, pool)
        return True

    async def _until_a_job_waits(self, keys: list[str]) -> None:
        """Wait until one of `keys` (queues) holds a job, WATCH_S at most. A take claims what it
        pops, so it cannot block as BLMPOP does; the wait is a BLMOVE of each queue onto itself
        (left to left), which blocks while the queue is empty and moves nothing when it is not.
        A watch is never cancelled (a cancelled blocking read costs its connection): one still
        waiting from before is waited on again."""
        watches = []
        for key in keys:
            watch = self.watches.get(key)
            if watch is None or watch.done():
                watch = self.watches[key] = asyncio.create_task(self._watch(key))
            watches.append(watch)
        await _first(asyncio.wait(watches, return_when=asyncio.FIRST_COMPLETED), self.stopping.wait())

    async def _watch(self, key: str) -> None:
        try:
            # (redis-py types BLMOVE's timeout as whole seconds; Redis takes a fraction)
            await self.blocking.execute_command("BLMOVE", key, key, "LEFT", "LEFT", WATCH_S)
        except RedisError as exc:  # the admission loop's next look at the queues meets it too, and says so
            log.debug("worker %s: could not watch %s (%s)", self.rq_worker.name, key, exc)
            await asyncio.sleep(WATCH_S)

    def _granted(self, pool: Pool, wanted: int) -> int:
        if not pool.gated:
            return wanted
        admission = self.gate.admit(wanted)
        if not admission.granted:
            self.gate_wait_s = min(admission.wait_s, 1.0)
            metrics.LLM_CALLS_HELD.inc(self.connection)
        return admission.granted

    def _start(self, queue: Queue, job_ids: list[str], pool: Pool) -> None:
        """Start the popped jobs: one round trip reads them and their cancel requests, one
        marks them all started."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.mget([cancel_key(job_id) for job_id in job_ids])
            for job_id in job_ids:
                pipe.hgetall(Job.key_for(job_id))
            cancels, *hashes = pipe.execute()
        startable = []
        for job_id, raw, cancel in zip(job_ids, hashes, cancels, strict=True):
            job = restore_job(self.connection, job_id, raw)
            if job is None:
                continue  # deleted while it waited, or a record RQ cannot read (logged)
            if job.get_status(refresh=False) not in (JobStatus.QUEUED, JobStatus.SCHEDULED):
                continue  # canceled (or run) while we popped it
            if cancel is not None:
                self.runtime.stop_reasons[job_id] = CANCELED  # its task stops before calling
            startable.append((job, queue))
        for entry in executions.start_executions(self.connection, self.rq_worker, startable, claimed=job_ids):
            self.running[entry.job.id] = entry
            pool.in_use += 1
            entry.task = asyncio.create_task(self._run(entry, pool))

    # --- running one job -----------------------------------------------------------------

    async def _run(self, entry: Running, pool: Pool) -> None:
        job = entry.job
        task = TASKS.get(job.func_name or "")
        try:
            with log_context(job_id=job.id, queue=job.origin), traced_run(job, task.name if task else UNKNOWN_TASK):
                await self._perform(entry)
        except RedisError as exc:
            # Its writes failed: leave it started; its lease lapses and recovery re-runs it.
            log.warning("job %s: Redis error (%s); left for recovery", job.id, exc)
        except Exception as exc:
            log.exception("job %s: could not record its end; left for recovery", job.id)
            report_bug(exc, **_bug_tags(job))
        finally:
            self.running.pop(job.id, None)
            self.runtime.stop_reasons.pop(job.id, None)
            pool.in_use -= 1
            if pool.gated:
                with _quietly("release a provider permit"):
                    self.gate.release()
            pool.freed.set()

    async def _perform(self, entry: Running) -> None:
        job, name = entry.job, self.rq_worker.name
        publishes = job.func_name in CLIENT_TASKS
        task = TASKS.get(job.func_name or "")
        if task is None:
            log.error("job %s refused: %s", job.id, unknown_task_error(job.func_name))
            executions.finish_failed(entry, name, unknown_task_error(job.func_name))
            return
        try:
            if task.on_loop:
                value = await task.func(job, self.runtime, *job.args, **job.kwargs)
            else:
                call = partial(task.func, job, *job.args, **job.kwargs)
                # In the job's context (its log fields, its trace), which threads do not inherit.
                in_context = partial(contextvars.copy_context().run, call)
                value = await asyncio.get_running_loop().run_in_executor(self.threads, in_context)
        except JobFailed as exc:
            # Expected: the error the client sees, not a traceback.
            claimed = executions.finish_failed(
                entry, name, str(exc), stopped=exc.error["type"] == STOPPED, publishes_end=publishes
            )
        except Requeue:
            executions.put_back(entry)
            return
        except Superseded:
            executions.finish_superseded(entry)
            return
        except asyncio.CancelledError:
            if self.runtime.stop_reasons.get(job.id) == SUPERSEDED:
                executions.finish_superseded(entry)
            else:  # shutting down (a blocking task cannot be stopped midway: it goes back too)
                executions.put_back(entry)
                log.info("job %s put back at the front of %s", job.id, job.origin)
            return
        except RedisError:
            raise
        except Exception as exc:
            log.exception("job %s failed with an unexpected error", job.id)
            report_bug(exc, **_bug_tags(job))
            tracing.annotate({"llmjobs.outcome": "failed"}, error_type=type(exc).__name__)
            # A bug: the traceback is kept.
            claimed = executions.finish_failed(entry, name, traceback.format_exc(), publishes_end=publishes)
        else:
            if isinstance(value, Retry):
                executions.finish_retry(entry, name, value)
                return
            claimed = executions.finish_succeeded(entry, name, value, publishes_end=publishes)
        if publishes:
            # After RQ's status is saved: a client told "succeeded" must read "succeeded".
            announce_end(job, claimed=claimed)

    # --- the tick ------------------------------------------------------------------------

    async def _tick(self) -> None:
        last_heartbeat = last_promote = 0.0
        interval = max(MIN_TICK_S, min(TICK_S, self.settings.progress_interval_s))
        while True:
            await asyncio.sleep(interval)
            try:
                self._write_progress()
                self._read_cancels()
                if time.monotonic() - last_heartbeat >= HEARTBEAT_S:
                    self._heartbeat()
                    last_heartbeat = time.monotonic()
                if time.monotonic() - last_promote >= PROMOTE_S:
                    promote_due_jobs(self.connection, list(self.queues.values()))
                    last_promote = time.monotonic()
            except RedisError as exc:
                log.warning("worker %s: Redis error in the tick (%s)", self.rq_worker.name, exc)
                await asyncio.sleep(1)
            except Exception as exc:  # a bug must not end the tick: heartbeats, cancels and retries hang on it
                log.exception("worker %s: the tick failed; carrying on", self.rq_worker.name)
                report_bug(exc, loop="tick")
                await asyncio.sleep(1)

    def _write_progress(self) -> None:
        for recorder in flush_progress(self.connection, list(self.runtime.progress.values())):
            self._stop(recorder.job.id, SUPERSEDED)

    def _read_cancels(self) -> None:
        """Read every running LLM job's cancel request, see that this worker is still
        registered, and report its calls in flight and the provider gate for /metrics: one
        round trip."""
        llm_jobs = [job_id for job_id, entry in self.running.items() if entry.job.func_name in CLIENT_TASKS]
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.mget([cancel_key(i) for i in llm_jobs] or ["-"])
            pipe.get(self.gate.closed_key)
            self._queue_registration_check(pipe)
            metrics.report_worker(  # the gate as the previous tick read it
                pipe,
                self.rq_worker.name,
                llm_in_flight=self.llm_pool.in_use,
                gate_closed_until=self.gate_closed_until,
                primary=primary_of(self.connection),
            )
            cancels, closed_until, registered, _ = pipe.execute()
        self.gate_closed_until = float(closed_until or 0)
        self._register_again_unless(registered)
        for job_id, requested in zip(llm_jobs, cancels if llm_jobs else [], strict=True):
            if requested is not None:
                self._stop(job_id, CANCELED)

    def _stop(self, job_id: str, reason: StopReason) -> None:
        entry = self.running.get(job_id)
        if entry is None or entry.task is None or job_id in self.runtime.stop_reasons:
            return
        self.runtime.stop_reasons[job_id] = reason
        entry.task.cancel()

    def _heartbeat(self) -> None:
        with self.connection.pipeline(transaction=False) as pipe:
            self._queue_registration_check(pipe)
            self.rq_worker.heartbeat(pipeline=pipe)
            self.rq_worker.set_state(WorkerStatus.BUSY if self.running else WorkerStatus.IDLE, pipeline=pipe)
            self.rq_worker.set_current_job_id(next(reversed(self.running), None), pipeline=pipe)
            executions.heartbeat(pipe, self.running.values())
            self.gate.renew(pipe)
            registered, *_ = pipe.execute()
        self._register_again_unless(registered)

    def _queue_registration_check(self, pipe: Pipeline) -> None:
        """Queue the check that this worker is in the set `Worker.all` and /readyz read. Not
        its hash: a heartbeat's or a job start's HSET makes that again after Redis lost it (a
        restart without persistence), and the worker would never be listed again."""
        pipe.sismember(self.rq_worker.redis_workers_keys, self.rq_worker.key)

    def _register_again_unless(self, registered: int) -> None:
        if not registered:
            self._register()

    # --- RQ's commands -------------------------------------------------------------------

    async def _commands(self) -> None:
        """RQ's worker commands on the worker's pubsub channel: stop-job, shutdown. The
        subscription is made again when the worker's other connection saw the primary move:
        a subscriber to a lost machine hears nothing, and no error says so."""
        while True:
            try:
                async with self.blocking.pubsub() as pubsub:
                    await pubsub.subscribe(self.rq_worker.pubsub_channel_name)
                    failovers = primary_of(self.connection).failovers_seen
                    while primary_of(self.connection).failovers_seen == failovers:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=COMMANDS_WAIT_S)
                        if message is not None and message["type"] == "message":
                            self._command(json.loads(message["data"]))
            except RedisError as exc:
                log.warning("worker %s: command channel lost (%s); resubscribing", self.rq_worker.name, exc)
                await asyncio.sleep(1)

    def _command(self, payload: dict) -> None:
        command = payload.get("command")
        if command == "stop-job" and (job_id := payload.get("job_id")):
            log.info("worker %s: stop-job %s", self.rq_worker.name, job_id)
            self._stop(job_id, STOPPED)
        elif command == "shutdown":
            self.stopping.set()


def _bug_tags(job: Job) -> dict[str, str | None]:
    """What a bug report says about the job; a client's job also names its client and kind
    (as far as its record, maybe the broken part, says)."""
    task = TASKS.get(job.func_name or "")
    tags: dict[str, str | None] = {"job_id": job.id, "queue": job.origin, "task": task.name if task else UNKNOWN_TASK}
    if job.func_name in CLIENT_TASKS:
        record = JobRecord(job)
        tags["kind"] = record.kind
        with suppress(KeyError):
            tags["client"] = record.client
    return tags


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of `waits` (coroutines) is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


class _quietly:
    """Log and swallow a Redis error in a step that must not stop the process."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, RedisError):
            log.warning("could not %s: %s", self.what, exc)
            return True
        return False
