"""GET /v1/jobs/{id}/events: Server-Sent Events from the real API, read over real HTTP."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
import requests
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.app import create_app
from service.jobs.push.events import publish_unpublished_ends
from service.jobs.storage.keys import UNPUBLISHED_ENDS_KEY
from tests.support.event_stream import events_of, progress_text, read_stream
from tests.support.fake_server import FAST_RETRIES, directive, fails_first
from tests.support.jobs import get, post_job_in_app, submit, wait_until_finished
from tests.support.keys import ALICE, BOB
from tests.support.waiting import wait_for


@pytest.fixture
def stack(start_api, start_worker):
    api = start_api(**FAST_RETRIES, SSE_KEEPALIVE_S="1")
    start_worker(**FAST_RETRIES)
    return api


def test_progress_then_one_terminal_event_then_the_stream_closes(stack):
    job = submit(stack, {"prompt": f"go {directive(tokens=40, chunk_delay_ms=20)}"})
    events = read_stream(stack, job["id"])
    done = get(stack, job["id"])

    assert [e.event for e in events[:-1]] == ["progress"] * (len(events) - 1)
    assert len(events) > 3  # the text came in several events, as it streamed
    assert events[-1].event == "succeeded" and events[-1].data == done
    assert progress_text(events) == done["result"]["text"]
    assert [e.data["output_tokens"] for e in events[:-1]] == sorted(e.data["output_tokens"] for e in events[:-1])
    ids = [tuple(map(int, e.id.split("-"))) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_last_event_id_resumes_without_gaps_or_repeats(stack):
    job = submit(stack, {"prompt": f"go {directive(tokens=40, chunk_delay_ms=20)}"})
    first = read_stream(stack, job["id"], limit=3)
    rest = read_stream(stack, job["id"], last_event_id=first[-1].id)
    assert first[-1].id not in {e.id for e in rest}
    assert progress_text(first + rest) == get(stack, job["id"])["result"]["text"]
    assert rest[-1].event == "succeeded"


def test_a_client_that_comes_after_the_end_gets_the_end_at_once(stack):
    job = submit(stack, {"prompt": "short [[fake: tokens=3]]"})
    wait_until_finished(stack, job["id"])
    started = time.monotonic()
    events = read_stream(stack, job["id"])
    assert events[-1].event == "succeeded"
    assert time.monotonic() - started < 5  # no waiting for a keep-alive round
    last = read_stream(stack, job["id"], last_event_id=events[-2].id)
    assert [e.event for e in last] == ["succeeded"]


@pytest.mark.parametrize(
    ("prompt", "end"),
    [("bad [[fake: error=400]]", "failed"), (f"long {directive(tokens=400, chunk_delay_ms=50)}", "canceled")],
    ids=["failed", "canceled-while-running"],
)
def test_a_failed_or_canceled_job_ends_its_stream(stack, prompt, end):
    job = submit(stack, {"prompt": prompt})
    if end == "canceled":
        wait_for(lambda: get(stack, job["id"])["status"] == "running", what="the job to run")
        requests.post(f"{stack}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10)
    events = read_stream(stack, job["id"])
    assert events[-1].event == end
    assert events[-1].data["status"] == end


def test_a_job_canceled_in_the_queue_ends_its_stream(start_api):
    api = start_api()  # no worker: the job stays queued
    job = submit(api, {"prompt": "never runs"})
    requests.post(f"{api}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10)
    assert [e.event for e in read_stream(api, job["id"])] == ["canceled"]


def test_a_retry_restarts_the_text_and_says_so(stack):
    job = submit(stack, {"prompt": fails_first(1, mid_stream_error="overloaded_error", after=5, tokens=12)})
    events = read_stream(stack, job["id"])
    attempts = [e.data["attempt"] for e in events if e.event == "progress"]
    assert attempts[0] == 1 and attempts[-1] == 2
    final_attempt = "".join(e.data["text"] for e in events if e.event == "progress" and e.data["attempt"] == 2)
    assert final_attempt == events[-1].data["result"]["text"]


def test_a_silent_stream_gets_keep_alive_comments(stack):
    job = submit(stack, {"prompt": f"x {directive(hang=1, after=1)}", "timeout_s": 4})
    with requests.get(f"{stack}/v1/jobs/{job['id']}/events", headers=ALICE, stream=True, timeout=30) as response:
        body = b"".join(response.iter_content(chunk_size=None)).decode()
    assert ": keep-alive" in body
    assert "event: failed" in body  # the deadline passed: it still ends


def test_stream_errors_are_json(stack):
    job = submit(stack, {"prompt": "x [[fake: tokens=2]]"})
    for headers, code in (
        (BOB, 404),
        ({**ALICE, "Last-Event-ID": "not-an-id"}, 422),
        ({}, 401),
    ):
        response = requests.get(f"{stack}/v1/jobs/{job['id']}/events", headers=headers, timeout=10)
        assert response.status_code == code and response.json()["code"] == code
    assert requests.get(f"{stack}/v1/jobs/{uuid.uuid4().hex}/events", headers=ALICE, timeout=10).status_code == 404


def test_open_streams_do_not_starve_other_requests(start_api, start_worker):
    api = start_api(SSE_MAX_STREAMS="2", API_THREADS="4", WEB_CONCURRENCY="1")
    start_worker()
    job = submit(api, {"prompt": f"slow {directive(tokens=200, chunk_delay_ms=50)}"})
    opened = [requests.get(f"{api}/v1/jobs/{job['id']}/events", headers=ALICE, stream=True, timeout=30)]
    opened.append(requests.get(f"{api}/v1/jobs/{job['id']}/events", headers=ALICE, stream=True, timeout=30))
    try:
        assert [r.status_code for r in opened] == [200, 200]
        full = requests.get(f"{api}/v1/jobs/{job['id']}/events", headers=ALICE, timeout=10)
        assert full.status_code == 503 and full.headers["Retry-After"]
        # the API still answers everything else while both streams stay open
        answers = []
        workers = [threading.Thread(target=lambda: answers.append(get(api, job["id"])["id"])) for _ in range(4)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=10)
        assert answers == [job["id"]] * 4
    finally:
        for response in opened:
            response.close()


def test_a_job_whose_end_was_never_published_still_ends_its_stream(service_env, monkeypatch, redis_conn):
    for name in ("REDIS_URL", "API_KEYS"):
        monkeypatch.setenv(name, service_env[name])
    monkeypatch.setenv("SSE_KEEPALIVE_S", "1")
    client = create_app().test_client()
    job_id = post_job_in_app(client, {"prompt": "hi"}).get_json()["id"]
    # the worker finished the job and died before publishing its end
    Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer).set_status(JobStatus.FINISHED)

    body = client.get(f"/v1/jobs/{job_id}/events", headers=ALICE).get_data()
    (event,) = events_of(httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=body))
    assert event.event == "succeeded" and event.id  # published now, so it has a resumable id
    assert redis_conn.xlen(f"llmjobs:events:{job_id}") == 1


def test_an_unreadable_record_among_unpublished_ends_is_dropped_not_fatal(redis_conn):
    broken = uuid.uuid4().hex
    redis_conn.hset(f"rq:job:{broken}", mapping={"status": "failed"})  # no `data`: RQ's restore raises on it
    redis_conn.zadd(UNPUBLISHED_ENDS_KEY, {broken: time.time() - 3600})

    assert publish_unpublished_ends(redis_conn) == []
    assert redis_conn.zscore(UNPUBLISHED_ENDS_KEY, broken) is None
