"""GET /metrics: counters every process keeps in Redis, read at scrape time; in-process on a
real Redis for the arithmetic, and end to end with several API and worker processes."""

from __future__ import annotations

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest

from service.app import create_app
from service.config import SettingsError, load_settings
from service.jobs.observability import metrics
from service.jobs.storage.queues import ALL_QUEUES, make_queues
from tests.support.fake_server import FAST_RETRIES, fails_first
from tests.support.jobs import get, submit, wait_until_finished
from tests.support.jobs_in_redis import DEFAULT_MODEL, complete, started_runs
from tests.support.keys import ALICE
from tests.support.prometheus import Samples, samples_of, scrape, value
from tests.support.waiting import wait_for
from tests.support.webhooks import WEBHOOKS_ON


def collected(redis_conn) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.RedisMetricsCollector(redis_conn, make_queues(redis_conn, ALL_QUEUES)))
    return samples_of(generate_latest(registry).decode())


# --- the arithmetic, in-process on a real Redis ------------------------------------------------


def test_histograms_are_cumulative_with_sum_and_count(redis_conn):
    for seconds in (0.2, 0.5, 0.7, 42.0, 5000.0):  # 0.5 is on a bound: `le` includes it
        metrics.JOB_DURATION.observe(redis_conn, seconds, queue="default", outcome="succeeded")
    with redis_conn.pipeline() as pipe:  # also within a caller's pipeline
        metrics.JOB_DURATION.observe(pipe, 3.0, queue="high", outcome="failed")
        pipe.execute()

    got = collected(redis_conn)
    name, labels = "llmjobs_job_duration_seconds", {"queue": "default", "outcome": "succeeded"}
    assert value(got, f"{name}_bucket", **labels, le="0.5") == 2
    assert value(got, f"{name}_bucket", **labels, le="1.0") == 3
    assert value(got, f"{name}_bucket", **labels, le="30.0") == 3
    assert value(got, f"{name}_bucket", **labels, le="60.0") == 4
    assert value(got, f"{name}_bucket", **labels, le="3600.0") == 4
    assert value(got, f"{name}_bucket", **labels, le="+Inf") == 5
    assert value(got, f"{name}_count", **labels) == 5
    assert value(got, f"{name}_sum", **labels) == pytest.approx(5043.4)
    assert value(got, f"{name}_count", queue="high", outcome="failed") == 1


def test_counters_keep_odd_label_values_apart(redis_conn):
    metrics.LLM_ERRORS.inc(redis_conn, model='m"1', error_type="a,b")
    metrics.LLM_ERRORS.inc(redis_conn, 2, model='m"1', error_type="a,b")
    metrics.LLM_ERRORS.inc(redis_conn, model="m:1", error_type='a"b')

    got = collected(redis_conn)
    assert value(got, "llmjobs_llm_errors_total", model='m"1', error_type="a,b") == 3
    assert value(got, "llmjobs_llm_errors_total", model="m:1", error_type='a"b') == 1


def test_a_job_that_ran_twice_adds_its_tokens_and_cost_once(redis_conn):
    first, second = started_runs(redis_conn, DEFAULT_MODEL, runs=2)
    complete(first, 12, 40, 0.000424)
    with pytest.raises(Exception, match=first.id):
        complete(second, 99, 99, 0.5)  # Superseded: the other run adds nothing
    (unpriced,) = started_runs(redis_conn, "mystery-model-1")
    complete(unpriced, 7, 8, None)

    got = collected(redis_conn)
    assert value(got, "llmjobs_llm_tokens_total", model=DEFAULT_MODEL, type="input") == 12
    assert value(got, "llmjobs_llm_tokens_total", model=DEFAULT_MODEL, type="output") == 40
    assert value(got, "llmjobs_llm_cost_usd_total", model=DEFAULT_MODEL) == pytest.approx(0.000424)
    # a model with no known price counts as `other`, and adds no cost
    assert value(got, "llmjobs_llm_tokens_total", model="other", type="output") == 8
    assert [labels for name, labels in got if name == "llmjobs_llm_cost_usd_total"] == [(("model", DEFAULT_MODEL),)]
    assert "mystery-model-1" not in str(got)
    assert value(got, "llmjobs_jobs_submitted_total", queue="default") == 2  # counted at submit


# --- end to end: several API processes and several worker processes -------------------------


def test_metrics_follow_jobs_run_by_several_processes(start_api, start_worker, receiver):
    env = {**FAST_RETRIES, **WEBHOOKS_ON}
    api = start_api(**env, WEB_CONCURRENCY="2")
    start_worker("high", "default", **{**env, "WORKER_CONCURRENCY": "2"})
    start_worker("webhooks", **env)  # nothing serves `low`: its job stays queued

    before = scrape(api)
    gauges = {
        "llmjobs_queue_depth", "llmjobs_jobs_waiting_retry", "llmjobs_jobs_running", "llmjobs_queue_workers",
        "llmjobs_llm_calls_in_flight", "llmjobs_llm_calls_in_flight_all", "llmjobs_provider_gate_closed_seconds",
        "llmjobs_redis_primary", "llmjobs_redis_failovers_seen", "llmjobs_batch_jobs_waiting",
        "llmjobs_provider_batches_open", "llmjobs_provider_batch_oldest_age_seconds",
    }  # fmt: skip
    assert {name for name, _ in before} == gauges, "nothing has been counted yet"
    for queue in ALL_QUEUES:
        assert value(before, "llmjobs_queue_depth", queue=queue) == 0
        assert value(before, "llmjobs_jobs_running", queue=queue) == 0
    # one worker process serves high and default, one webhooks, none low: what /readyz checks
    assert {queue: value(before, "llmjobs_queue_workers", queue=queue) for queue in ALL_QUEUES} == {
        "high": 1, "default": 1, "low": 0, "batch": 0, "webhooks": 1,
    }  # fmt: skip

    receiver.script = [(500, {}, 0.0)]  # the webhook's first try fails; its retry is delivered
    hooked = submit(api, {"prompt": "hooked [[fake: tokens=6]]", "callback_url": receiver.url})
    plain = [submit(api, {"prompt": f"plain {i} [[fake: tokens={i + 3}]]"}) for i in range(3)]
    haiku = submit(api, {"prompt": "haiku [[fake: tokens=4]]", "model": "claude-haiku-4-5"})
    rejected = submit(api, {"prompt": "bad [[fake: error=400]]"})
    made_up = submit(api, {"prompt": "who?", "model": "made-up-model-9"})  # the provider: 404 not_found_error
    flaky = submit(api, {"prompt": fails_first(1, error=500)})  # (a 529 is held back, not retried)
    slow = submit(api, {"prompt": "slow [[fake: tokens=40 chunk_delay_ms=100]]", "priority": "high"})
    parked = submit(api, {"prompt": "never runs", "priority": "low"})

    wait_for(lambda: get(api, slow["id"])["status"] == "running", what="the slow job to run")
    during = scrape(api)
    assert value(during, "llmjobs_jobs_running", queue="high") == 1
    # Each worker process reports its calls in flight at every tick (so a tick late): the slow
    # job shows in its process's report while it runs.
    reported = wait_for(
        lambda: (now := scrape(api)) and value(now, "llmjobs_llm_calls_in_flight_all") >= 1 and now,
        what="the slow job in the workers' reports",
    )
    per_process = [v for (name, _), v in reported.items() if name == "llmjobs_llm_calls_in_flight"]
    assert len(per_process) == 2 and sum(per_process) == value(reported, "llmjobs_llm_calls_in_flight_all")
    assert value(reported, "llmjobs_provider_gate_closed_seconds") == 0
    assert value(during, "llmjobs_queue_depth", queue="low") == 1
    assert requests.post(f"{api}/v1/jobs/{parked['id']}/cancel", headers=ALICE, timeout=10).status_code == 200

    ran = [hooked, *plain, haiku, rejected, made_up, flaky, slow]
    ended = {job["id"]: wait_until_finished(api, job["id"]) for job in [*ran, parked]}
    wait_for(lambda: get(api, hooked["id"])["webhook"]["state"] == "delivered", what="the webhook")
    # The in-flight gauges are what each worker process reported at its last tick.
    wait_for(lambda: value(scrape(api), "llmjobs_llm_calls_in_flight_all") == 0, what="the workers' next report")
    after = scrape(api)

    assert value(after, "llmjobs_jobs_submitted_total", queue="default") == 8
    assert value(after, "llmjobs_jobs_submitted_total", queue="high") == 1
    assert value(after, "llmjobs_jobs_submitted_total", queue="low") == 1
    finished = {
        ("default", "succeeded"): 6, ("default", "failed"): 2, ("high", "succeeded"): 1, ("low", "canceled"): 1,
    }  # fmt: skip
    for (queue, outcome), count in finished.items():
        assert value(after, "llmjobs_jobs_finished_total", queue=queue, outcome=outcome) == count
        assert value(after, "llmjobs_job_duration_seconds_count", queue=queue, outcome=outcome) == count
    assert sum(v for (name, _), v in after.items() if name == "llmjobs_jobs_finished_total") == 10
    slow_lifetime = value(after, "llmjobs_job_duration_seconds_sum", queue="high", outcome="succeeded")
    assert slow_lifetime >= 3.9  # 40 tokens 100 ms apart: 39 pauses

    succeeded = [ended[job["id"]] for job in ran if ended[job["id"]]["status"] == "succeeded"]
    for model in (DEFAULT_MODEL, "claude-haiku-4-5"):
        results = [job["result"] for job in succeeded if job["model"] == model]
        for kind in ("input", "output"):
            tokens = sum(result["usage"][f"{kind}_tokens"] for result in results)
            assert value(after, "llmjobs_llm_tokens_total", model=model, type=kind) == tokens
        cost = sum(result["cost_usd"] for result in results)
        assert value(after, "llmjobs_llm_cost_usd_total", model=model) == pytest.approx(cost, abs=1e-6)

    rejected_type = ended[rejected["id"]]["error"]["type"]
    assert value(after, "llmjobs_llm_errors_total", model=DEFAULT_MODEL, error_type=rejected_type) == 1
    assert value(after, "llmjobs_llm_errors_total", model=DEFAULT_MODEL, error_type="api_error") == 1
    # a made-up model name is no label of its own: it would add series forever
    made_up_type = ended[made_up["id"]]["error"]["type"]
    assert value(after, "llmjobs_llm_errors_total", model="other", error_type=made_up_type) == 1
    assert "made-up-model-9" not in str(after)
    assert value(after, "llmjobs_job_retries_total", queue="default", reason="error") == 1
    attempts_by_queue = {"default": 0, "high": 0}
    for job in ran:
        attempts_by_queue[job["priority"]] += ended[job["id"]]["attempts"]
    for queue, attempts in attempts_by_queue.items():
        assert value(after, "llmjobs_job_queue_wait_seconds_count", queue=queue) == attempts
    assert value(after, "llmjobs_job_queue_wait_seconds_count", queue="low") == 0  # canceled before it ran

    assert value(after, "llmjobs_webhook_deliveries_total", kind="job", outcome="retrying") == 1
    assert value(after, "llmjobs_webhook_deliveries_total", kind="job", outcome="delivered") == 1
    for queue in ALL_QUEUES:
        assert value(after, "llmjobs_queue_depth", queue=queue) == 0
        assert value(after, "llmjobs_jobs_running", queue=queue) == 0
        assert value(after, "llmjobs_jobs_waiting_retry", queue=queue) == 0

    # Whichever gunicorn process answers, it reads the same figures.
    for _ in range(6):
        again = scrape(api)
        assert again == after, {
            k: (after.get(k), again.get(k)) for k in after.keys() | again.keys() if after.get(k) != again.get(k)
        }


# --- behind the operator login, when asked ----------------------------------------------

OPERATOR_ONLY = {"METRICS_OPERATOR_AUTH": "true", "DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "s3cret-ops-pw"}


def test_metrics_can_be_put_behind_the_operator_login(app, monkeypatch):
    for name, setting in OPERATOR_ONLY.items():
        monkeypatch.setenv(name, setting)
    client = create_app().test_client()

    for headers in ({}, ALICE, {"Authorization": "Basic b3BzOndyb25n"}):  # none, a client key, ops:wrong
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401 and refused.get_json()["code"] == 401
        assert refused.headers["WWW-Authenticate"].startswith("Basic ")
    scraped = client.get("/metrics", auth=("ops", "s3cret-ops-pw"))
    assert scraped.status_code == 200 and scraped.content_type.startswith("text/plain")
    assert "llmjobs_queue_depth" in scraped.get_data(as_text=True)


def test_metrics_behind_the_login_needs_a_login(monkeypatch):
    monkeypatch.setenv("METRICS_OPERATOR_AUTH", "true")
    monkeypatch.delenv("DASHBOARD_USERNAME", raising=False)
    monkeypatch.delenv("DASHBOARD_PASSWORD", raising=False)
    with pytest.raises(SettingsError, match="METRICS_OPERATOR_AUTH"):
        load_settings()
