"""The asyncio worker with real processes: many calls in one process, priority slots,
cancel and RQ's stop-job, SIGTERM, the task allowlist, expected failures, the usage of
calls cut short, the shared provider gate, a bare worker, Redis restarts, ends
published at least once, and progress written by APPEND."""

from __future__ import annotations

import json
import signal
import time
import uuid
from functools import partial
from typing import Any

import pytest
import requests
from rq import Queue, Worker
from rq.command import send_stop_job_command
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from fake_anthropic.ratelimits import DEFAULT_REQUESTS_PER_MINUTE, DEFAULT_TOKENS_PER_MINUTE
from service.jobs.storage.keys import UNPUBLISHED_ENDS_KEY as UNPUBLISHED_KEY
from service.jobs.storage.keys import events_key, live_text_key
from service.jobs.storage.queues import SERIALIZER
from tests.support.fake_server import directive, fails_first
from tests.support.jobs import get, parse, submit, wait_until_finished
from tests.support.keys import ALICE
from tests.support.processes import process_tree
from tests.support.prometheus import scrape, value
from tests.support.waiting import wait_for
from tests.support.webhooks import WEBHOOKS_ON

QUICK = directive(tokens=2)
# Hanging jobs end by SIGTERM at teardown: let the worker put them back without waiting long.
SHORT_GRACE = {"WORKER_SHUTDOWN_GRACE_S": "1"}


def started_ids(redis_conn, queue: str = "default") -> list[str]:
    return StartedJobRegistry(queue, connection=redis_conn, serializer=SERIALIZER).get_job_ids(cleanup=False)


def rq_job(redis_conn, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis_conn, serializer=SERIALIZER)


def cancel(api: str, job_id: str) -> requests.Response:
    return requests.post(f"{api}/v1/jobs/{job_id}/cancel", headers=ALICE, timeout=10)


def fake_admin(fake_anthropic: str, route: str, **fields: int) -> Any:
    """The (shared) fake server's `/_fake/<route>`: read it, or with `fields` change it."""
    url = f"{fake_anthropic}/_fake/{route}"
    response = requests.post(url, json=fields, timeout=5) if fields else requests.get(url, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def fake_requests(fake_anthropic: str) -> list[dict]:
    return fake_admin(fake_anthropic, "requests")


# --- 1. one process, many calls -------------------------------------------------------------


def test_one_process_runs_many_calls_at_once(start_api, start_worker, redis_conn):
    api = start_api()
    jobs = [submit(api, {"prompt": f"many {i} {directive(latency_ms=1500, tokens=2)}"}) for i in range(20)]
    worker = start_worker(WORKER_CONCURRENCY="20", WORKER_HIGH_RESERVE="0")  # no slot kept for `high`

    # While they run, RQ's own view (what `rq info` and rq-dashboard read) shows it all.
    wait_for(lambda: len(started_ids(redis_conn)) == 20, what="all 20 in the started registry")
    workers = Worker.all(connection=redis_conn)
    assert [w.pid for w in workers] == [worker.pid]
    assert process_tree(worker.pid) == [worker.pid]  # no work horse, no child of any kind
    assert set(started_ids(redis_conn)) == {j["id"] for j in jobs}

    done = [wait_until_finished(api, j["id"]) for j in jobs]
    assert [j["status"] for j in done] == ["succeeded"] * 20
    first_end = min(parse(j["finished_at"]) for j in done)
    assert all(parse(j["started_at"]) < first_end for j in done)  # all 20 calls overlapped
    assert started_ids(redis_conn) == []


# --- 2. priority without starvation ----------------------------------------------------------


def test_a_flood_of_low_jobs_leaves_a_slot_for_high(start_api, start_worker, redis_conn):
    api = start_api()
    start_worker(WORKER_CONCURRENCY="4", WORKER_HIGH_RESERVE="0.25", **SHORT_GRACE)
    lows = [submit(api, {"prompt": f"flood {i} {directive(hang=1)}", "priority": "low"}) for i in range(6)]
    wait_for(lambda: len(started_ids(redis_conn, "low")) == 3, what="three low jobs running")

    high = submit(api, {"prompt": f"urgent {QUICK}", "priority": "high"})
    assert wait_until_finished(api, high["id"])["status"] == "succeeded"

    # The low jobs never end (they hang), so every low job ever taken is still running.
    assert len(started_ids(redis_conn, "low")) == 3
    assert redis_conn.llen("rq:queue:low") == 3
    assert sorted(get(api, j["id"])["status"] for j in lows) == ["queued"] * 3 + ["running"] * 3


def test_a_freed_slot_takes_high_then_default_then_low(start_api, start_worker, redis_conn):
    api = start_api()
    start_worker(WORKER_CONCURRENCY="1", **SHORT_GRACE)
    blocker = submit(api, {"prompt": f"blocker {directive(hang=1)}"})
    wait_for(lambda: get(api, blocker["id"])["status"] == "running", what="the blocker to run")
    waiting = {p: submit(api, {"prompt": f"{p} {QUICK}", "priority": p}) for p in ("low", "default", "high")}
    assert all(get(api, j["id"])["status"] == "queued" for j in waiting.values())

    assert cancel(api, blocker["id"]).status_code == 202
    done = {p: wait_until_finished(api, j["id"]) for p, j in waiting.items()}
    assert all(j["status"] == "succeeded" for j in done.values())
    starts = sorted(done, key=lambda p: parse(done[p]["started_at"]))
    assert starts == ["high", "default", "low"]


# --- 3. cancel and RQ's stop-job -------------------------------------------------------------


def test_cancel_stops_a_running_task_and_leaves_no_started_entry(start_api, start_worker, redis_conn):
    api = start_api()
    start_worker()
    job = submit(api, {"prompt": f"long {directive(tokens=400, chunk_delay_ms=50)}"})
    wait_for(lambda: get(api, job["id"])["progress"]["output_tokens"] > 3, what="streaming to start")

    assert cancel(api, job["id"]).status_code == 202
    done = wait_until_finished(api, job["id"])
    assert done["status"] == "canceled" and done["error"]["type"] == "canceled"
    assert done["progress"]["output_tokens"] < 400  # stopped midway, not run to its end
    assert job["id"] not in started_ids(redis_conn)


def test_rqs_stop_job_command_stops_the_task(start_api, start_worker, redis_conn):
    api = start_api()
    start_worker()
    job = submit(api, {"prompt": f"long {directive(tokens=400, chunk_delay_ms=50)}"})
    wait_for(lambda: get(api, job["id"])["progress"]["output_tokens"] > 3, what="streaming to start")

    send_stop_job_command(redis_conn, job["id"], serializer=SERIALIZER)
    done = wait_until_finished(api, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "stopped" and done["error"]["retryable"] is False
    assert done["progress"]["output_tokens"] < 400
    assert job["id"] not in started_ids(redis_conn)
    assert rq_job(redis_conn, job["id"]).get_status() == "stopped"


# --- 4. SIGTERM ------------------------------------------------------------------------------


def test_sigterm_lets_a_short_job_finish_and_puts_a_long_one_back_at_the_front(
    start_api, start_worker, redis_conn, processes
):
    api = start_api()
    worker = start_worker(WORKER_CONCURRENCY="2", WORKER_SHUTDOWN_GRACE_S="1")
    # Hangs on its first call only: the worker started after the shutdown runs it to the end.
    long = submit(api, {"prompt": f"long {directive(hang=1, fail_times=1, key=uuid.uuid4().hex)}"})
    short = submit(api, {"prompt": f"short {directive(tokens=8, chunk_delay_ms=50)}"})
    wait_for(lambda: get(api, short["id"])["progress"]["output_tokens"] > 0, what="the short job to stream")
    assert get(api, long["id"])["status"] == "running"
    behind = submit(api, {"prompt": f"behind {QUICK}"})  # both slots are busy: it waits in the queue

    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: worker.poll() is not None, timeout=15, what="the worker to exit")
    assert worker.returncode == 0, processes.log_of(worker)

    assert get(api, short["id"])["status"] == "succeeded"
    assert get(api, long["id"])["status"] == "queued"
    assert [i.decode() for i in redis_conn.lrange("rq:queue:default", 0, -1)] == [long["id"], behind["id"]]
    assert started_ids(redis_conn) == []
    assert rq_job(redis_conn, long["id"]).get_status() == "queued"

    start_worker()
    assert wait_until_finished(api, long["id"])["status"] == "succeeded"
    assert wait_until_finished(api, behind["id"])["status"] == "succeeded"


# --- 5. the task allowlist -------------------------------------------------------------------


def test_a_job_naming_any_other_function_is_refused_and_nothing_runs(start_worker, redis_conn, tmp_path):
    marker = tmp_path / "pwned"
    queue = Queue("default", connection=redis_conn, serializer=SERIALIZER)
    job = queue.enqueue("os.system", f"touch {marker}")
    start_worker()

    wait_for(lambda: job.get_status(refresh=True) == "failed", what="the job to be failed")
    assert not marker.exists()
    refusal = job.latest_result().exc_string
    assert "refused" in refusal and "'os.system'" in refusal, refusal
    assert "Traceback" not in refusal
    assert job.id in FailedJobRegistry("default", connection=redis_conn, serializer=SERIALIZER)


def test_a_record_rq_cannot_read_costs_only_itself(start_api, start_worker, redis_conn):
    """A queue holding a record RQ cannot restore next to a good job: one dequeue takes
    both, the bad one is skipped (logged) and the good one still runs."""
    api = start_api()
    good = submit(api, {"prompt": "fine [[fake: tokens=3]]"})
    redis_conn.hset("rq:job:unreadable", mapping={"data": b"\x80\x04not json", "status": "queued"})
    redis_conn.hset("rq:job:unreadable", "created_at", "not a time")
    redis_conn.lpush("rq:queue:default", "unreadable")  # ahead of the good job
    start_worker(WORKER_CONCURRENCY="10", WORKER_HIGH_RESERVE="0")
    assert wait_until_finished(api, good["id"])["status"] == "succeeded"


# --- 6. expected failures keep no traceback ------------------------------------------------------


def test_an_expected_failure_is_stored_as_its_error_without_a_traceback(start_api, start_worker, redis_conn):
    api = start_api()
    start_worker()
    done = wait_until_finished(api, submit(api, {"prompt": f"bad {directive(error=400)}"})["id"])
    assert done["status"] == "failed" and done["error"]["type"] == "invalid_request_error"

    assert done["id"] in FailedJobRegistry("default", connection=redis_conn, serializer=SERIALIZER)
    stored = rq_job(redis_conn, done["id"]).latest_result().exc_string
    assert stored == f"{done['error']['type']}: {done['error']['message']}"
    assert "Traceback" not in stored


# --- 7. the usage of calls cut short -------------------------------------------------------------


def test_calls_cut_short_count_their_tokens_but_no_job(start_api, start_worker):
    api = start_api(LLM_MAX_ATTEMPTS="1")  # a job's attempt budget is fixed when it is submitted
    start_worker(LLM_MAX_ATTEMPTS="1")
    broken_prompt = f"breaks midway {directive(tokens=50, mid_stream_error='api_error', after=5)}"
    canceled_prompt = f"canceled midway {directive(tokens=400, chunk_delay_ms=50)}"
    broken = submit(api, {"prompt": broken_prompt})
    canceled = submit(api, {"prompt": canceled_prompt})
    wait_for(lambda: get(api, canceled["id"])["progress"]["output_tokens"] >= 5, what="the stream to start")
    assert cancel(api, canceled["id"]).status_code == 202

    ended = [wait_until_finished(api, broken["id"]), wait_until_finished(api, canceled["id"])]
    assert [j["status"] for j in ended] == ["failed", "canceled"]
    assert ended[0]["attempts"] == 1 and ended[0]["progress"]["output_tokens"] == 5
    input_tokens = len(broken_prompt) // 4 + len(canceled_prompt) // 4  # what the fake bills
    output_tokens = sum(j["progress"]["output_tokens"] for j in ended)
    assert output_tokens > 5

    report = requests.get(f"{api}/v1/usage", params={"group_by": "client"}, headers=ALICE, timeout=10)
    assert report.status_code == 200, report.text
    [alice] = report.json()["data"]
    assert (alice["jobs"], alice["input_tokens"], alice["output_tokens"]) == (0, input_tokens, output_tokens)
    metrics = scrape(api)
    model = ended[0]["model"]
    assert value(metrics, "llmjobs_llm_tokens_total", model=model, type="input") == input_tokens
    assert value(metrics, "llmjobs_llm_tokens_total", model=model, type="output") == output_tokens


# --- 8. the shared provider gate ---------------------------------------------------------------


@pytest.fixture
def storm(fake_anthropic: str):
    """Start a storm on the fake server; always end it, whatever the test did."""
    yield partial(fake_admin, fake_anthropic, "storm")
    fake_admin(fake_anthropic, "storm", seconds=0)


def test_a_429_storm_holds_every_call_and_uses_no_attempt(start_api, start_worker, storm, fake_anthropic):
    api = start_api()
    start_worker(WORKER_CONCURRENCY="30")
    storm(seconds=4, retry_after=1, status=429)
    first = submit(api, {"prompt": f"stormy first {QUICK}"})
    # Once one call has met the storm, the gate holds every other job in its queue.
    wait_for(lambda: get(api, first["id"])["error"], what="the first call to meet the 429")
    jobs = [first, *(submit(api, {"prompt": f"stormy {i} {QUICK}"}) for i in range(29))]

    done = [wait_until_finished(api, j["id"], timeout=60) for j in jobs]
    assert [j["status"] for j in done] == ["succeeded"] * 30
    assert [j["attempts"] for j in done] == [1] * 30
    during = fake_admin(fake_anthropic, "storm")
    assert 1 <= during["requests"] <= 10, during  # not one per job per retry
    assert value(scrape(api), "llmjobs_llm_calls_held_total") > 0


def test_a_worker_started_into_a_storm_sends_one_call_not_one_per_slot(start_api, start_worker, storm, fake_anthropic):
    api = start_api()
    # Long enough for a worker that starts slowly on a loaded machine (it took 8 s once), and
    # ended once the worker has spent five seconds in it.
    storm(seconds=120, retry_after=1, status=429)
    tag = uuid.uuid4().hex
    jobs = [submit(api, {"prompt": f"into the storm {tag} {i} {QUICK}"}) for i in range(20)]
    start_worker(WORKER_CONCURRENCY="20")  # 20 free slots, 20 jobs waiting, the provider refusing
    wait_for(lambda: fake_admin(fake_anthropic, "storm")["requests"], timeout=60, what="the worker's first call")
    time.sleep(5)
    storm(seconds=0)
    done = [wait_until_finished(api, j["id"], timeout=60) for j in jobs]
    assert [j["status"] for j in done] == ["succeeded"] * 20
    assert [j["attempts"] for j in done] == [1] * 20
    during = fake_admin(fake_anthropic, "storm")
    # One call until the provider has answered the fresh process (a 429), then one probe per
    # retry-after: about one a second, not 20 at once.
    assert 1 <= max(during["per_second"]) <= 3, during


@pytest.fixture
def provider_budget(fake_anthropic: str):
    """Shrink the fake server's per-window budget; always give the default back."""
    yield partial(fake_admin, fake_anthropic, "limits")
    fake_admin(
        fake_anthropic,
        "limits",
        requests_per_minute=DEFAULT_REQUESTS_PER_MINUTE,
        tokens_per_minute=DEFAULT_TOKENS_PER_MINUTE,
        window_seconds=60,
    )


def test_a_spent_budget_holds_new_calls_until_one_call_has_refilled_not_the_whole_budget(
    start_api, start_worker, provider_budget, fake_anthropic
):
    api = start_api()
    start_worker(WORKER_CONCURRENCY="4")
    provider_budget(requests_per_minute=2, window_seconds=60)
    tag = uuid.uuid4().hex
    done = [wait_until_finished(api, submit(api, {"prompt": f"budget {tag} {i} {QUICK}"})["id"]) for i in range(2)]
    assert [j["status"] for j in done] == ["succeeded"] * 2
    # The second answer said 0 of 2 requests left, the budget whole again at its reset, up
    # to a minute away: one request is back after half of that, so the gate closes for at
    # most 30 s, not until the reset (LLM_RATELIMIT_REQUEST_MARGIN is 1).
    closed = wait_for(lambda: value(scrape(api), "llmjobs_provider_gate_closed_seconds"), what="the gate to close")
    assert 15 < closed <= 30.5, closed
    held = submit(api, {"prompt": f"held {tag} {QUICK}"})
    time.sleep(1)
    assert get(api, held["id"])["status"] == "queued"  # no process starts a call meanwhile
    assert not [r for r in fake_requests(fake_anthropic) if f"held {tag}" in r["body"]["messages"][0]["content"]]


def test_llm_max_in_flight_caps_calls_across_processes(start_api, start_worker, fake_anthropic):
    api = start_api()
    start_worker(WORKER_PROCESSES="2", WORKER_CONCURRENCY="6", LLM_MAX_IN_FLIGHT="2")
    tag = uuid.uuid4().hex
    prompts = [f"capped {tag} {i} {directive(latency_ms=700, tokens=2)}" for i in range(6)]
    jobs = [submit(api, {"prompt": prompt}) for prompt in prompts]
    done = [wait_until_finished(api, j["id"]) for j in jobs]
    assert all(j["status"] == "succeeded" for j in done)

    # When each call arrived at the fake, how many calls had arrived and not yet ended (a
    # job ends after its call, so this over-counts, never under-counts).
    arrived = {r["body"]["messages"][0]["content"]: r["at"] for r in fake_requests(fake_anthropic)}
    calls = sorted((arrived[p], parse(j["finished_at"]).timestamp()) for p, j in zip(prompts, done, strict=True))
    in_flight = [sum(1 for at, ended in calls if at <= moment < ended) for moment, _ in calls]
    assert max(in_flight) <= 2, calls


# --- 9. a bare worker is a whole worker --------------------------------------------------------


def test_a_bare_worker_delivers_webhooks_and_makes_the_service_ready(start_api, start_worker, receiver):
    api = start_api(**WEBHOOKS_ON)
    start_worker(**WEBHOOKS_ON)  # `python worker.py`, no queues named
    ready = requests.get(f"{api}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text

    job = submit(api, {"prompt": f"hooked {QUICK}", "callback_url": receiver.url})
    hook = wait_for(lambda: (h := get(api, job["id"])["webhook"]) and h["state"] == "delivered" and h, what="delivery")
    assert [d.headers["webhook-id"] for d in receiver.deliveries] == [hook["id"]]


# --- 10. Redis restarts ----------------------------------------------------------------------


@pytest.mark.parametrize("persistence", ["aof", "none"])
def test_scheduled_retries_resume_after_a_redis_restart(start_api, start_worker, redis_server, redis_conn, persistence):
    retries = {"RETRY_BASE_S": "2", "RETRY_MAX_S": "2", "LLM_MAX_ATTEMPTS": "3"}
    api = start_api(**retries)
    worker = start_worker(**retries)
    waiting = submit(api, {"prompt": fails_first(1, error=500)})
    # Crash once the retry is fully scheduled: its time shows in the job a moment before the
    # attempt's end is written, and a crash in between is a lease's recovery (the scheduler's,
    # not started here), another test's subject.
    scheduled = Queue("default", connection=redis_conn, serializer=SERIALIZER).scheduled_job_registry
    wait_for(lambda: waiting["id"] in scheduled.get_job_ids(), what="the job to wait for its retry")

    redis_server.crash()
    try:
        if persistence == "none":
            for leftover in redis_server.directory.iterdir():  # the AOF: the restart starts empty
                if leftover.is_dir():
                    for part in leftover.iterdir():
                        part.unlink()
                    leftover.rmdir()
                else:
                    leftover.unlink()
        time.sleep(3)  # an outage long enough for the worker to notice, and for the retry to fall due
    finally:
        redis_server.start()

    if persistence == "aof":  # the retry that was waiting runs
        done = wait_until_finished(api, waiting["id"], timeout=20)
        assert (done["status"], done["attempts"]) == ("succeeded", 2)
    # and a retry that starts waiting after the restart runs too
    after = submit(api, {"prompt": fails_first(1, error=500)})
    done = wait_until_finished(api, after["id"], timeout=20)
    assert (done["status"], done["attempts"]) == ("succeeded", 2)
    assert worker.poll() is None
    # The worker registered again (at its next heartbeat after the restart emptied Redis).
    wait_for(lambda: requests.get(f"{api}/readyz", timeout=10).status_code == 200, timeout=30, what="/readyz")


def test_a_worker_whose_registration_was_lost_registers_again_though_its_hash_came_back(
    start_api, start_worker, redis_conn
):
    # After a restart that emptied Redis, a job start's or a heartbeat's HSET makes the
    # worker's hash again before the worker sees it gone; the sets /readyz reads stay empty.
    api = start_api()
    worker = start_worker()
    wait_for(lambda: requests.get(f"{api}/readyz", timeout=10).status_code == 200, what="/readyz")
    [name] = redis_conn.smembers("rq:workers")
    redis_conn.delete("rq:workers", *redis_conn.keys("rq:workers:*"))
    assert redis_conn.exists(name)  # (it registers again within a tick: /readyz may never see the gap)

    wait_for(lambda: requests.get(f"{api}/readyz", timeout=10).status_code == 200, what="/readyz again")
    assert worker.poll() is None


# --- 11. every end is published at least once ----------------------------------------------------


def test_an_end_left_half_published_is_published_by_the_scheduler(
    start_api, start_worker, start_scheduler, redis_conn, receiver
):
    api = start_api(**WEBHOOKS_ON)
    start_worker("high", "default", "low", **WEBHOOKS_ON)  # no deliveries yet
    job = submit(api, {"prompt": f"half published {QUICK}", "callback_url": receiver.url})
    assert wait_until_finished(api, job["id"])["status"] == "succeeded"
    wait_for(lambda: redis_conn.zscore(UNPUBLISHED_KEY, job["id"]) is None, what="the end to be published")
    hook_id = get(api, job["id"])["webhook"]["id"]

    # As if its publisher had died after recording the webhook's id, before the rest:
    # no terminal event, no delivery queued, and the note that its end is unpublished
    # older than any publisher takes.
    [(terminal_id, fields)] = redis_conn.xrevrange(events_key(job["id"]), count=1)
    assert fields[b"type"] == b"succeeded"
    redis_conn.xdel(events_key(job["id"]), terminal_id)
    delivery = f"delivery-{hook_id}"
    assert redis_conn.lrem("rq:queue:webhooks", 0, delivery) == 1
    redis_conn.delete(f"rq:job:{delivery}")
    redis_conn.zadd(UNPUBLISHED_KEY, {job["id"]: time.time() - 3600})

    start_scheduler(**WEBHOOKS_ON)
    start_worker("webhooks", **WEBHOOKS_ON)
    wait_for(lambda: redis_conn.zscore(UNPUBLISHED_KEY, job["id"]) is None, what="the scheduler to publish it")
    wait_for(lambda: get(api, job["id"])["webhook"]["state"] == "delivered", what="the webhook")
    [(_, fields)] = redis_conn.xrevrange(events_key(job["id"]), count=1)
    assert fields[b"type"] == b"succeeded"
    time.sleep(2)  # two more scheduler polls: the end is not published again
    assert [d.headers["webhook-id"] for d in receiver.deliveries] == [hook_id]
    assert [f[b"type"] for _, f in redis_conn.xrange(events_key(job["id"]))].count(b"succeeded") == 1


# --- 12. progress is appended ------------------------------------------------------------------


def test_progress_is_appended_and_the_job_hash_stays_small(start_api, start_worker, redis_conn):
    api = start_api()
    start_worker()
    appends_before = redis_conn.info("commandstats").get("cmdstat_append", {}).get("calls", 0)
    job = submit(api, {"prompt": f"long reply {directive(tokens=2000, chunk_delay_ms=2)}", "max_tokens": 2000})
    samples = []
    while (seen := get(api, job["id"]))["status"] in ("queued", "running"):
        before = redis_conn.get(live_text_key(job["id"])) or b""
        shown = get(api, job["id"])
        after = redis_conn.get(live_text_key(job["id"])) or b""
        meta = redis_conn.hget(f"rq:job:{job['id']}", "meta") or b""
        streaming = meta and json.loads(meta).get("result") is None  # not yet its final record
        if shown["status"] == "running" and after and streaming:
            # the API shows the live text: between two reads of it
            text = shown["progress"]["text"].encode()
            assert before == text[: len(before)] and text == after[: len(text)]
            samples.append((len(after), len(meta)))
    assert seen["status"] == "succeeded"
    assert len(seen["result"]["text"].split()) == 2000
    long_samples = [s for s in samples if s[0] > 4096]
    assert long_samples, samples  # it was seen running with kilobytes of text
    assert max(meta for _, meta in samples) < 2048, samples
    assert redis_conn.info("commandstats")["cmdstat_append"]["calls"] - appends_before > 1
    # each progress event carries only the new text: together they are the reply, once
    events = [json.loads(f[b"data"]) for _, f in redis_conn.xrange(events_key(job["id"])) if f[b"type"] == b"progress"]
    assert "".join(e["text"] for e in events) == seen["result"]["text"]
