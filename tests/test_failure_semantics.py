"""Every way a job can go wrong, end to end with real processes: provider errors and
retries, deadlines, cancel and re-run, a SIGKILLed worker, and a Redis outage."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis.asyncio
import requests

from service.jobs.storage import claims
from tests.support.fake_server import FAST_RETRIES, directive, fails_first
from tests.support.jobs import get, parse, post_job, submit, wait_until_finished, watch
from tests.support.keys import ALICE
from tests.support.network import refused_port
from tests.support.processes import kill_tree
from tests.support.prometheus import scrape, value
from tests.support.waiting import wait_for


@pytest.fixture
def stack(start_api, start_worker):
    """An API and one worker on all queues, with fast retries."""
    api = start_api(**FAST_RETRIES)
    start_worker(**FAST_RETRIES)
    return api


@pytest.mark.parametrize(
    ("failure", "error_type", "attempts"),
    [
        # The provider's limit (429, 529 before any output) is not the job's fault: the job
        # waits at the front of its queue behind the shared gate and uses up no attempt.
        ({"error": 529}, "overloaded_error", 1),
        ({"error": 500}, "api_error", 3),
        ({"error": 429, "retry_after": 1}, "rate_limit_error", 1),
        # Overloaded midway: the output so far is billed, so it was an attempt.
        ({"mid_stream_error": "overloaded_error", "after": 2}, "overloaded_error", 3),
    ],
    ids=["529", "500", "429", "overloaded-mid-stream"],
)
def test_transient_errors_are_retried_and_the_wait_shows_as_queued(stack, failure, error_type, attempts):
    job = submit(stack, {"prompt": fails_first(2, **failure)})
    seen = watch(stack, job["id"], until={"succeeded", "failed"})

    assert seen[-1]["status"] == "succeeded", seen[-1]
    assert seen[-1]["attempts"] == attempts
    assert seen[-1]["error"] is None and seen[-1]["next_attempt_at"] is None
    waiting = [j for j in seen if j["status"] == "queued" and j["error"]]
    assert waiting, "never saw the job waiting between attempts"
    assert all(j["next_attempt_at"] and j["error"]["type"] == error_type for j in waiting)
    assert all(j["error"]["retryable"] for j in waiting)
    assert not [j for j in seen if j["status"] == "running" and j["next_attempt_at"]]


def test_a_stalled_stream_is_retried_as_a_timeout(start_api, start_worker):
    api = start_api(**FAST_RETRIES)
    start_worker(**FAST_RETRIES, LLM_READ_TIMEOUT_S="1")
    seen = watch(api, submit(api, {"prompt": fails_first(1, hang=1, after=2)})["id"], until={"succeeded", "failed"})
    assert seen[-1]["status"] == "succeeded" and seen[-1]["attempts"] == 2
    assert any(j["status"] == "queued" and (j["error"] or {}).get("type") == "timeout" for j in seen)


def test_connection_errors_are_retried_until_attempts_run_out(start_api, start_worker):
    api = start_api(**FAST_RETRIES)
    with refused_port() as port:
        start_worker(**FAST_RETRIES, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}")
        done = wait_until_finished(api, submit(api, {"prompt": "unreachable"})["id"])
    assert done["status"] == "failed"
    assert done["attempts"] == 3
    assert (done["error"]["type"], done["error"]["retryable"]) == ("connection_error", True)


def test_retry_after_is_honoured(stack):
    # The failing attempt lasts a second, so that the polls see it run: a 429 is not the
    # job's attempt (the gate holds the job back, its attempt undone, started_at with it).
    job = submit(stack, {"prompt": fails_first(1, error=429, retry_after=3, latency_ms=1000)})
    seen = watch(stack, job["id"], until={"succeeded", "failed"})
    assert seen[-1]["status"] == "succeeded"
    first_start = parse(next(j["started_at"] for j in seen if j["started_at"]))
    scheduled = [parse(j["next_attempt_at"]) for j in seen if j["next_attempt_at"]]
    assert scheduled and (scheduled[0] - first_start).total_seconds() >= 3
    assert parse(seen[-1]["started_at"]) >= scheduled[0]  # the second attempt did not start early


@pytest.mark.parametrize(
    ("failure", "error_type"),
    [
        ({"error": 429, "spend_limit": 1}, "rate_limit_error"),
        ({"error": 401}, "authentication_error"),
        ({"error": 403}, "permission_error"),
        ({"error": 404}, "not_found_error"),
        ({"error": 413}, "request_too_large"),
    ],
    ids=["spend-limit-429", "401", "403", "404", "413"],
)
def test_final_errors_fail_at_once_with_the_providers_message(stack, failure, error_type):
    done = wait_until_finished(stack, submit(stack, {"prompt": f"x {directive(**failure)}"})["id"])
    assert done["status"] == "failed"
    assert done["attempts"] == 1
    assert done["error"]["type"] == error_type and done["error"]["retryable"] is False
    assert done["error"]["message"]
    if "spend_limit" in failure:
        assert "spend limit" in done["error"]["message"]


def test_when_attempts_run_out_the_last_error_is_kept(stack):
    done = wait_until_finished(stack, submit(stack, {"prompt": fails_first(10, error=500)})["id"])
    assert done["status"] == "failed"
    assert done["attempts"] == 3  # LLM_MAX_ATTEMPTS
    assert done["error"]["type"] == "api_error"


def test_a_retry_that_would_pass_the_deadline_fails_as_timeout(stack):
    job = submit(stack, {"prompt": fails_first(1, error=429, retry_after=30), "timeout_s": 5})
    done = wait_until_finished(stack, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "timeout"
    assert "rate_limit_error" in done["error"]["message"]  # says what it was waiting out
    assert done["attempts"] == 1


def test_cancel_stops_a_running_job_within_a_second_and_keeps_its_text(stack):
    job = submit(stack, {"prompt": f"long {directive(tokens=400, chunk_delay_ms=50)}"})
    wait_for(lambda: get(stack, job["id"])["progress"]["output_tokens"] > 3, what="streaming to start")

    asked = datetime.now(UTC)
    response = requests.post(f"{stack}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10)
    assert response.status_code == 202 and response.json()["status"] == "running"
    done = wait_until_finished(stack, job["id"])

    assert done["status"] == "canceled"
    assert done["error"]["type"] == "canceled"
    assert (parse(done["finished_at"]) - asked).total_seconds() < 1.0
    assert 3 < done["progress"]["output_tokens"] < 400 and done["progress"]["text"]
    assert requests.post(f"{stack}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10).status_code == 409


def test_cancel_reaches_a_silent_provider_call(stack):
    job = submit(stack, {"prompt": f"x {directive(hang=1, after=2)}"})
    wait_for(lambda: get(stack, job["id"])["progress"]["output_tokens"] >= 1, what="the call to start streaming")
    time.sleep(0.3)  # the fake sends its two chunks at once, then nothing
    asked = datetime.now(UTC)
    requests.post(f"{stack}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10)
    done = wait_until_finished(stack, job["id"])
    assert done["status"] == "canceled"
    assert (parse(done["finished_at"]) - asked).total_seconds() < 1.0


def test_a_canceled_queued_job_never_runs_and_a_retry_runs_it(start_api, start_worker, fake_anthropic):
    api = start_api(**FAST_RETRIES)
    prompt = f"never {uuid.uuid4().hex}"
    job = submit(api, {"prompt": prompt})
    canceled = requests.post(f"{api}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    marker = submit(api, {"prompt": "after it"})
    start_worker(**FAST_RETRIES)
    assert wait_until_finished(api, marker["id"])["status"] == "succeeded"  # the worker got past it
    assert get(api, job["id"])["status"] == "canceled"
    sent = [r["body"]["messages"][0]["content"] for r in requests.get(f"{fake_anthropic}/_fake/requests").json()]
    assert prompt not in sent

    rerun = requests.post(f"{api}/v1/jobs/{job['id']}/retry", headers=ALICE, timeout=10)
    # The answer shows the job after its re-queue: the idle worker may have taken it already.
    assert rerun.status_code == 202 and rerun.json()["status"] in {"queued", "running"}
    assert wait_until_finished(api, job["id"])["status"] == "succeeded"


def test_retry_reruns_a_failed_job(stack):
    job = submit(stack, {"prompt": fails_first(1, error=400)})
    assert wait_until_finished(stack, job["id"])["status"] == "failed"
    assert requests.post(f"{stack}/v1/jobs/{job['id']}/retry", headers=ALICE, timeout=10).status_code == 202
    done = wait_until_finished(stack, job["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2  # every LLM call made for the job
    assert requests.post(f"{stack}/v1/jobs/{job['id']}/retry", headers=ALICE, timeout=10).status_code == 409


def test_jobs_of_a_sigkilled_worker_run_again_within_a_minute_and_end_once(
    start_api, start_worker, start_scheduler, fake_anthropic, processes
):
    api = start_api()
    start_scheduler()
    doomed = start_worker(WORKER_CONCURRENCY="3")
    prompts = [f"crash {i} {uuid.uuid4().hex} {directive(tokens=60, chunk_delay_ms=50)}" for i in range(3)]
    jobs = [submit(api, {"prompt": p}) for p in prompts]
    wait_for(lambda: all(get(api, j["id"])["progress"]["output_tokens"] > 0 for j in jobs), what="all three streaming")

    killed = kill_tree(doomed.pid)  # mid-call
    killed_at = datetime.now(UTC)
    assert killed == [doomed.pid]  # one process held all three calls
    start_worker()

    done = [wait_until_finished(api, j["id"], timeout=60) for j in jobs]
    assert [j["status"] for j in done] == ["succeeded"] * 3
    assert all(j["attempts"] == 2 for j in done)
    assert all((parse(j["started_at"]) - killed_at).total_seconds() < 60 for j in done)
    print("kill -> re-run started:", [round((parse(j["started_at"]) - killed_at).total_seconds(), 1) for j in done])
    # Ran twice, recorded once: one result each, with the usage of the run that finished.
    sent = [r["body"]["messages"][0]["content"] for r in requests.get(f"{fake_anthropic}/_fake/requests").json()]
    assert all(sent.count(p) == 2 for p in prompts)
    assert all(j["result"]["usage"]["output_tokens"] == 60 for j in done)
    # So do the metrics, once each job's end is published (just after its status shows it).
    wait_for(
        lambda: value(scrape(api), "llmjobs_jobs_finished_total", queue="default", outcome="succeeded") >= 3,
        what="three ends counted",
    )
    counted = scrape(api)
    assert value(counted, "llmjobs_job_retries_total", queue="default", reason="worker_lost") == 3
    assert value(counted, "llmjobs_jobs_finished_total", queue="default", outcome="succeeded") == 3
    assert value(counted, "llmjobs_llm_tokens_total", model=done[0]["model"], type="output") == 180


async def take_as_a_worker_does(url: str, queue_key: str) -> tuple[str, list[str]]:
    connection = redis.asyncio.Redis.from_url(url)
    try:
        return await claims.take(connection, [queue_key], 5)
    finally:
        await connection.aclose()


def test_a_job_taken_by_a_worker_that_died_before_starting_it_runs(
    start_api, start_worker, start_scheduler, redis_server, redis_conn
):
    api = start_api()
    job = submit(api, {"prompt": f"taken {directive(tokens=2)}"})
    # A worker's first step, before it marks the job started: the take. Killed right after
    # it (or its Redis primary lost between the two), it leaves the job queued in no queue.
    taken = asyncio.run(take_as_a_worker_does(redis_server.url, "rq:queue:default"))
    assert taken == ("rq:queue:default", [job["id"]])
    assert redis_conn.llen("rq:queue:default") == 0
    start_scheduler()
    start_worker()

    done = wait_until_finished(api, job["id"], timeout=60)
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1  # never started before: no attempt was spent
    assert redis_conn.zcard("llmjobs:claims") == 0  # the claim ended with its start
    assert value(scrape(api), "llmjobs_jobs_put_back_total", queue="default") == 1


def test_a_redis_outage_answers_503_and_loses_no_acknowledged_job(
    start_api, start_worker, start_scheduler, redis_server
):
    api = start_api()
    start_scheduler()
    start_worker()
    jobs = [submit(api, {"prompt": f"outage {i} {directive(tokens=20, chunk_delay_ms=50)}"}) for i in range(4)]
    wait_for(lambda: get(api, jobs[0]["id"])["status"] == "running", what="the first job to run")

    redis_server.crash()  # kill -9: what survives is what AOF (appendfsync always) had written
    try:
        down = post_job(api, {"prompt": "while down"}, timeout=15)
        assert down.status_code == 503 and down.headers["Retry-After"]
        assert down.json()["code"] == 503 and down.json()["message"]
        assert requests.get(f"{api}/v1/jobs/{jobs[0]['id']}", headers=ALICE, timeout=15).status_code == 503
        ready = requests.get(f"{api}/readyz", timeout=15)
        assert ready.status_code == 503 and "redis" in ready.json()["errors"]["checks"]
        assert requests.get(f"{api}/healthz", timeout=15).status_code == 200
        unscraped = requests.get(f"{api}/metrics", timeout=15)
        assert unscraped.status_code == 503 and unscraped.json()["code"] == 503
        time.sleep(3)  # an outage long enough for the worker to notice
    finally:
        redis_server.start()  # same port and directory: the AOF brings the data back

    done = [wait_until_finished(api, j["id"], timeout=60) for j in jobs]
    assert [j["status"] for j in done] == ["succeeded"] * 4
    assert requests.get(f"{api}/readyz", timeout=15).status_code == 200  # the worker came back by itself


def test_a_job_dequeued_just_as_it_was_canceled_still_stops(start_api, start_worker, redis_conn):
    api = start_api()
    job = submit(api, {"prompt": f"raced {directive(tokens=200, chunk_delay_ms=20)}"})
    assert requests.post(f"{api}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10).json()["status"] == "canceled"
    # as if a worker had popped it a moment before the cancel removed it from the queue
    redis_conn.rpush("rq:queue:default", job["id"])
    start_worker()
    wait_for(lambda: redis_conn.llen("rq:queue:default") == 0, what="the worker to take it")
    time.sleep(1.5)  # long enough for a run that ignored the cancel to show it
    done = get(api, job["id"])
    assert done["status"] == "canceled" and done["result"] is None
    ends = [fields[b"type"] for _, fields in redis_conn.xrange(f"llmjobs:events:{job['id']}")]
    assert ends == [b"canceled"]
