"""Prometheus metrics, counted in Redis and read at scrape time.

Every process that sees an event (the API's server processes, the worker processes,
the scheduler, on any machine) adds it to one Redis hash, `llmjobs:metrics`; `/metrics`
reads that hash and the queues' own state. So the figures are the same whichever API
process is scraped, and nothing is lost when a process exits. This
replaces prometheus-client's multiprocess mode, which sums per-process files on one
machine only and cannot see workers elsewhere.

A hash field is a series: `["<name>", [<label values>]]`, plus a third element for a
histogram (a bucket's index, or "sum"). Buckets are stored non-cumulative and summed
when read. Counters are integers (cost in micro-dollars) so that HINCRBY stays exact;
they survive restarts of every process, and Prometheus copes with the reset if Redis
loses them.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from redis import Redis
from redis.client import Pipeline
from rq import Queue

from service.jobs.observability.budgets import budget_report
from service.jobs.observability.counters import HashIncrements
from service.jobs.storage.connection import read_hash
from service.jobs.storage.keys import METRICS_KEY, OPEN_PROVIDER_BATCHES_KEY, WORKER_REPORTS_KEY
from service.jobs.storage.queues import BATCH_QUEUE, HEARTBEAT_FRESH_S, live_workers
from service.jobs.storage.sentinel import Primary

# worker process name -> JSON of what it reported at its last tick (its LLM calls in flight,
# the provider gate as it saw it); a report older than WORKER_REPORT_FRESH_S is a process
# that stopped, and is dropped at the next scrape.
WORKER_REPORT_FRESH_S = 30
OTHER_MODEL = "other"


@lru_cache(maxsize=4096)  # a few series per job, from a small set: JSON-encoded once each
def _series(name: str, labels: tuple[str, ...], *part: int | str) -> str:
    return json.dumps([name, list(labels), *part], separators=(",", ":"))


@dataclass(frozen=True)
class RedisCounter:
    name: str  # exposed with the `_total` suffix
    documentation: str
    labelnames: tuple[str, ...]
    scale: float = 1.0  # exposed value per stored unit

    def field(self, **labels: str) -> str:
        return _series(self.name, tuple(str(labels[name]) for name in self.labelnames))

    def inc(self, redis: Redis | Pipeline, amount: int = 1, **labels: str) -> None:
        redis.hincrby(METRICS_KEY, self.field(**labels), amount)


@dataclass(frozen=True)
class RedisHistogram:
    name: str
    documentation: str
    labelnames: tuple[str, ...]
    buckets: tuple[float, ...]  # upper bounds, ascending; +Inf is implied

    def observe(self, redis: Redis | Pipeline, value: float, **labels: str) -> None:
        values = tuple(str(labels[name]) for name in self.labelnames)
        pipe = redis if isinstance(redis, Pipeline) else redis.pipeline(transaction=False)
        pipe.hincrby(METRICS_KEY, _series(self.name, values, bisect_left(self.buckets, value)), 1)
        pipe.hincrbyfloat(METRICS_KEY, _series(self.name, values, "sum"), value)
        if pipe is not redis:
            pipe.execute()


JOBS_SUBMITTED = RedisCounter("llmjobs_jobs_submitted", "LLM jobs accepted, by queue.", ("queue",))
JOBS_FINISHED = RedisCounter(
    "llmjobs_jobs_finished", "LLM jobs ended, by queue and outcome (succeeded, failed, canceled).", ("queue", "outcome")
)
JOB_RETRIES = RedisCounter(
    "llmjobs_job_retries",
    "LLM job runs started again, by queue and reason: `error` (a retryable LLM error), `worker_lost` "
    "(its worker died) or `requested` (POST /retry or a requeue in rq-dashboard).",
    ("queue", "reason"),
)
JOBS_PUT_BACK = RedisCounter(
    "llmjobs_jobs_put_back",
    "Jobs a worker took from their queue and never started (it died, or the Redis primary was lost "
    "between the two), put back at the front of their queue by the scheduler, by queue.",
    ("queue",),
)
LLM_ERRORS = RedisCounter(
    "llmjobs_llm_errors",
    "Failed LLM calls, by model (`other`: one with no known price) and error type.",
    ("model", "error_type"),
)
LLM_TOKENS = RedisCounter(
    "llmjobs_llm_tokens",
    "Tokens of completed LLM jobs, by model (`other`: one with no known price) and type (input, output, "
    "cache_write, cache_read: the prompt cache's, apart from input).",
    ("model", "type"),
)
LLM_COST = RedisCounter(
    "llmjobs_llm_cost_usd", "Cost of completed LLM jobs in US dollars, by model.", ("model",), scale=1e-6
)
WEBHOOK_DELIVERIES = RedisCounter(
    "llmjobs_webhook_deliveries",
    "Webhook delivery attempts, by kind (job, batch) and outcome (delivered, retrying, failed, gone, "
    "worker_lost: its worker died mid-attempt and it is made again).",
    ("kind", "outcome"),
)
LLM_CALLS_HELD = RedisCounter(
    "llmjobs_llm_calls_held",
    "Times a worker process had free slots but held back new LLM calls: the provider gate was closed "
    "(429, overload, rate-limit budget low) or LLM_MAX_IN_FLIGHT was reached.",
    (),
)
PROVIDER_BATCHES_CREATED = RedisCounter(
    "llmjobs_provider_batches_created", "Provider batches (Message Batches API) the batch tier created.", ()
)
PROVIDER_BATCHES_ADOPTED = RedisCounter(
    "llmjobs_provider_batches_adopted",
    "Provider batches a create may have made whose worker died before recording it, found again and read by "
    "another worker (each one the create may have made, when they cannot be told apart).",
    (),
)
BATCH_JOBS_SENT_AGAIN = RedisCounter(
    "llmjobs_batch_jobs_sent_again",
    "Batch-tier jobs sent in a new provider batch because a worker died after sending their create and no "
    "batch it may have made was found: the provider may answer them twice (each ends once).",
    (),
)
BATCH_RESULTS_DROPPED = RedisCounter(
    "llmjobs_batch_results_dropped",
    "Provider batch results read but not used, by reason: ended (its job had ended: canceled, timed out, or "
    "answered by another result; or its document call was no longer waited for), elsewhere (its job is no longer "
    "in that provider batch), unknown (no such job: another program's batch on the same API key, or one expired).",
    ("reason",),
)
COUNTERS = (
    JOBS_SUBMITTED, JOBS_FINISHED, JOB_RETRIES, JOBS_PUT_BACK, LLM_ERRORS, LLM_TOKENS, LLM_COST, WEBHOOK_DELIVERIES,
    LLM_CALLS_HELD, PROVIDER_BATCHES_CREATED, PROVIDER_BATCHES_ADOPTED, BATCH_JOBS_SENT_AGAIN, BATCH_RESULTS_DROPPED,
)  # fmt: skip

JOB_DURATION = RedisHistogram(
    "llmjobs_job_duration_seconds",
    "Seconds from a job's creation to its end (queue wait, attempts and retry back-off included), "
    "by queue and outcome.",
    ("queue", "outcome"),
    (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
QUEUE_WAIT = RedisHistogram(
    "llmjobs_job_queue_wait_seconds",
    "Seconds an LLM job waited in its queue before an attempt started (each attempt), by queue.",
    ("queue",),
    (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
HISTOGRAMS = (JOB_DURATION, QUEUE_WAIT)


def model_label(model: str, priced: bool) -> str:
    """The `model` label: a model without a known price is `other`, which bounds the label
    to the price table (made-up model names fail, but would each add series forever)."""
    return model if priced else OTHER_MODEL


# The `type` label of each token count of a usage.
TOKEN_TYPES = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_creation_input_tokens": "cache_write",
    "cache_read_input_tokens": "cache_read",
}


def llm_usage(model: str, usage: Mapping[str, Any], cost_usd: float | None) -> HashIncrements:
    """What a completed job adds to the metrics; added by the completion step itself, so a
    job that ran twice counts once (as in `service.jobs.observability.usage`)."""
    model = model_label(model, priced=cost_usd is not None)
    amounts = {
        LLM_TOKENS.field(model=model, type=label): usage.get(name) or 0
        for name, label in TOKEN_TYPES.items()
        if name in ("input_tokens", "output_tokens") or usage.get(name)
    }
    if cost_usd is not None:
        amounts[LLM_COST.field(model=model)] = round(cost_usd / LLM_COST.scale)
    return HashIncrements(METRICS_KEY, None, amounts)


def report_worker(pipe: Pipeline, name: str, *, llm_in_flight: int, gate_closed_until: float, primary: Primary) -> None:
    """What a worker process reports every tick, for the gauges below."""
    report = {
        "llm_in_flight": llm_in_flight, "gate_closed_until": gate_closed_until, "at": time.time(),
        "redis_primary": primary.address, "redis_failovers_seen": primary.failovers_seen,
    }  # fmt: skip
    pipe.hset(WORKER_REPORTS_KEY, name, json.dumps(report))


class RedisMetricsCollector:
    """Builds every metric family from Redis at scrape time."""

    def __init__(self, connection: Redis, queues: dict[str, Queue], budgets: Sequence[tuple[str, int, str]] = ()):
        self._redis = connection
        self._queues = queues
        self._budgets = budgets  # (client, limit micro-USD, window) of each CLIENT_BUDGETS entry

    def collect(self) -> Iterator[Metric]:
        stored: dict[str, dict[tuple[str, ...], dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for field, value in read_hash(self._redis, METRICS_KEY).items():
            name, labels, *part = json.loads(field)
            stored[name][tuple(labels)][str(part[0]) if part else ""] = float(value)
        for counter in COUNTERS:
            family = CounterMetricFamily(counter.name, counter.documentation, labels=counter.labelnames)
            for labels, values in sorted(stored[counter.name].items()):
                family.add_metric(labels, values[""] * counter.scale)
            yield family
        for histogram in HISTOGRAMS:
            buckets = HistogramMetricFamily(histogram.name, histogram.documentation, labels=histogram.labelnames)
            for labels, values in sorted(stored[histogram.name].items()):
                buckets.add_metric(labels, _cumulative(histogram, values), values.get("sum", 0.0))
            yield buckets
        yield from self._queue_gauges()
        yield from self._batch_tier_gauges()
        yield from self._worker_gauges()
        yield from self._budget_gauges()

    def _batch_tier_gauges(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "llmjobs_batch_jobs_waiting", "Batch-tier jobs waiting to be sent in a provider batch."
        )
        open_batches = GaugeMetricFamily(
            "llmjobs_provider_batches_open", "Provider batches whose results are not yet all read into their jobs."
        )
        oldest = GaugeMetricFamily(
            "llmjobs_provider_batch_oldest_age_seconds",
            "Seconds since the jobs of the oldest open provider batch were collected (0: none open). The provider "
            "answers within 24 h.",
        )
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.llen(f"rq:queue:{BATCH_QUEUE}")
            pipe.zcard(OPEN_PROVIDER_BATCHES_KEY)
            pipe.zrange(OPEN_PROVIDER_BATCHES_KEY, 0, 0, withscores=True)
            depth, count, first = pipe.execute()
        waiting.add_metric((), depth)
        open_batches.add_metric((), count)
        oldest.add_metric((), max(0.0, time.time() - first[0][1]) if first else 0.0)
        yield from (waiting, open_batches, oldest)

    def _budget_gauges(self) -> Iterator[Metric]:
        spent = GaugeMetricFamily(
            "llmjobs_budget_spent_ratio",
            "Share of each client's spend budget (CLIENT_BUDGETS) its window's calls cost.",
            labels=("client", "window"),
        )
        committed = GaugeMetricFamily(
            "llmjobs_budget_committed_ratio",
            "Share of each client's spend budget spent or reserved by jobs not ended: at 1 its submits are refused.",
            labels=("client", "window"),
        )
        for client, limit, window in self._budgets:
            report = budget_report(self._redis, client, limit, window)
            spent.add_metric((client, window), report["spent"] / report["limit"])
            committed.add_metric((client, window), (report["spent"] + report["reserved"]) / report["limit"])
        yield from (spent, committed)

    def _worker_gauges(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "llmjobs_llm_calls_in_flight", "LLM jobs a worker process is running now, by process.", labels=("process",)
        )
        in_all = GaugeMetricFamily("llmjobs_llm_calls_in_flight_all", "LLM jobs all worker processes are running now.")
        gate = GaugeMetricFamily(
            "llmjobs_provider_gate_closed_seconds",
            "Seconds until the provider gate reopens (0: open): closed by a 429, an overload or a low rate-limit "
            "budget; no worker process starts a call meanwhile.",
        )
        now = time.time()
        reports, stale = {}, []
        for field, raw in read_hash(self._redis, WORKER_REPORTS_KEY).items():
            report = json.loads(raw)
            if now - report["at"] > WORKER_REPORT_FRESH_S:
                stale.append(field.decode())
            else:
                reports[field.decode()] = report
        if stale:
            self._redis.hdel(WORKER_REPORTS_KEY, *stale)
        for name, report in sorted(reports.items()):
            in_flight.add_metric((name,), report["llm_in_flight"])
        in_all.add_metric((), sum(report["llm_in_flight"] for report in reports.values()))
        closed_until = max((report["gate_closed_until"] for report in reports.values()), default=0.0)
        gate.add_metric((), max(0.0, closed_until - now))
        yield from (in_flight, in_all, gate)
        yield from self._redis_gauges(reports)

    def _redis_gauges(self, reports: dict[str, dict]) -> Iterator[Metric]:
        """Which Redis each worker process uses and the failovers it followed, by its last report.
        (An API process says its own in /readyz: a scrape must read the same whichever API
        process answers it.)"""
        primary = GaugeMetricFamily(
            "llmjobs_redis_primary",
            "1 for the Redis (host:port) each worker process uses: with REDIS_SENTINELS, the primary Sentinel last "
            "named to it. Processes on different primaries: a failover is under way, or one did not follow.",
            labels=("process", "primary"),
        )
        failovers = GaugeMetricFamily(
            "llmjobs_redis_failovers_seen",
            "Times each worker process followed the Redis primary to another (Sentinel failovers), since it started.",
            labels=("process",),
        )
        for name, report in sorted(reports.items()):
            if "redis_primary" in report:  # a worker of an older release reports no primary
                primary.add_metric((name, report["redis_primary"]), 1)
                failovers.add_metric((name,), report["redis_failovers_seen"])
        yield from (primary, failovers)

    def _queue_gauges(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("llmjobs_queue_depth", "Jobs waiting in each queue.", labels=("queue",))
        waiting = GaugeMetricFamily(
            "llmjobs_jobs_waiting_retry", "Jobs waiting for their next attempt, by queue.", labels=("queue",)
        )
        running = GaugeMetricFamily("llmjobs_jobs_running", "Jobs being run, by queue.", labels=("queue",))
        with self._redis.pipeline(transaction=False) as pipe:
            for queue in self._queues.values():
                pipe.llen(queue.key)
                pipe.zcard(queue.scheduled_job_registry.key)
                pipe.zcard(queue.started_job_registry.key)
            answers = pipe.execute()
        for i, name in enumerate(self._queues):
            for family, value in zip((depth, waiting, running), answers[3 * i : 3 * i + 3], strict=True):
                family.add_metric((name,), value)
        # The same count /readyz checks, so that an alert can say which queue nobody serves.
        workers = GaugeMetricFamily(
            "llmjobs_queue_workers",
            f"Workers serving each queue with a heartbeat in the last {HEARTBEAT_FRESH_S} s.",
            labels=("queue",),
        )
        for name, queue in self._queues.items():
            workers.add_metric((name,), len(live_workers(queue)))
        yield from (depth, waiting, running, workers)


def _cumulative(histogram: RedisHistogram, values: dict[str, float]) -> list[tuple[str, float]]:
    buckets, total = [], 0.0
    for i, bound in enumerate((*histogram.buckets, float("inf"))):
        total += values.get(str(i), 0.0)
        buckets.append(("+Inf" if bound == float("inf") else str(float(bound)), total))
    return buckets
