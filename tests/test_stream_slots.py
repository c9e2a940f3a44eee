"""Event streams never hold a slot for good: HEAD, a gone client, the per-client cap, the
time limit; and a Last-Event-ID Redis would refuse is a JSON 422. The real API process."""

from __future__ import annotations

import os
import signal

import requests

from tests.support.event_stream import progress_text, read_stream
from tests.support.fake_server import directive
from tests.support.jobs import get, submit
from tests.support.keys import ALICE, BOB
from tests.support.processes import process_tree
from tests.support.waiting import wait_for


def open_stream(api: str, job_id: str, headers: dict = ALICE) -> requests.Response:
    return requests.get(f"{api}/v1/jobs/{job_id}/events", headers=headers, stream=True, timeout=30)


def stream_status(api: str, job_id: str, headers: dict = ALICE) -> int:
    with open_stream(api, job_id, headers) as response:
        return response.status_code


def test_head_requests_give_their_stream_slot_back(start_api):
    api = start_api(SSE_MAX_STREAMS="2", WEB_CONCURRENCY="1")  # no worker: the job stays queued
    job = submit(api, {"prompt": "never runs"})
    heads = [requests.head(f"{api}/v1/jobs/{job['id']}/events", headers=ALICE, timeout=10) for _ in range(5)]
    assert [r.status_code for r in heads] == [200] * 5
    # The process's two slots are free: two streams at once still open.
    first, second = open_stream(api, job["id"]), open_stream(api, job["id"])
    try:
        assert (first.status_code, second.status_code) == (200, 200), second.text
    finally:
        first.close()
        second.close()


def test_a_stream_answers_at_once_not_at_its_first_event_or_keep_alive(start_api):
    api = start_api(WEB_CONCURRENCY="1")  # SSE_KEEPALIVE_S stays 15 s; no worker: nothing happens
    job = submit(api, {"prompt": "never runs"})
    # The status line and headers arrive well before the first keep-alive (or this times out).
    with requests.get(f"{api}/v1/jobs/{job['id']}/events", headers=ALICE, stream=True, timeout=5) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")


def test_a_stopping_api_ends_its_streams_and_exits_at_once(start_api, processes):
    api = start_api(WEB_CONCURRENCY="1")  # SSE_KEEPALIVE_S stays 15 s; no worker: nothing happens
    server = processes.started[-1][1]
    job = submit(api, {"prompt": "never runs"})
    with requests.get(f"{api}/v1/jobs/{job['id']}/events", headers=ALICE, stream=True, timeout=30) as response:
        assert response.status_code == 200
        os.killpg(server.pid, signal.SIGTERM)  # a deploy: the stream must not hold it
        body = b"".join(response.iter_content(chunk_size=None)).decode()
    assert ": server stopping; reconnect with Last-Event-ID" in body
    assert server.wait(timeout=10) == 0  # its graceful stop would wait for an open stream


def test_a_reload_replaces_the_api_processes_and_ends_their_streams(start_api, processes):
    api = start_api(WEB_CONCURRENCY="1")
    server = processes.started[-1][1]
    before = set(process_tree(server.pid)[1:])
    job = submit(api, {"prompt": "never runs"})
    with open_stream(api, job["id"]) as response:
        assert response.status_code == 200
        os.kill(server.pid, signal.SIGHUP)  # a reload: new processes, the old ones stop
        body = b"".join(response.iter_content(chunk_size=None)).decode()
    assert ": server stopping; reconnect with Last-Event-ID" in body

    after = wait_for(lambda: set(process_tree(server.pid)[1:]) - before, timeout=30, what="new API processes")
    assert after and server.poll() is None
    assert get(api, job["id"])["status"] == "queued"  # served by the new process
    wait_for(lambda: not before & set(process_tree(server.pid)), timeout=30, what="the old API processes to stop")


def test_a_client_that_goes_away_gives_its_slot_back(start_api):
    api = start_api(SSE_MAX_STREAMS="1", SSE_KEEPALIVE_S="1", WEB_CONCURRENCY="1")
    job = submit(api, {"prompt": "never runs"})
    with open_stream(api, job["id"]) as response:
        assert response.status_code == 200
        assert stream_status(api, job["id"]) == 503  # the one slot is taken
    # The next keep-alive finds the client gone and the slot comes back.
    wait_for(lambda: stream_status(api, job["id"]) == 200, timeout=15, what="the slot to come back")


def test_each_client_holds_at_most_its_own_number_of_streams(start_api):
    api = start_api(SSE_MAX_STREAMS_PER_CLIENT="2", SSE_KEEPALIVE_S="1", WEB_CONCURRENCY="2")  # two processes
    job = submit(api, {"prompt": "never runs"})
    bobs_job = submit(api, {"prompt": "never runs"}, headers=BOB)
    held = [open_stream(api, job["id"]), open_stream(api, job["id"])]
    try:
        assert [r.status_code for r in held] == [200, 200]
        with open_stream(api, job["id"]) as refused:
            assert refused.status_code == 429 and refused.json()["code"] == 429, refused.status_code
            assert float(refused.headers["Retry-After"]) > 0
        assert stream_status(api, bobs_job["id"], BOB) == 200  # another client is not held up
        held.pop().close()
        wait_for(lambda: stream_status(api, job["id"]) == 200, timeout=15, what="alice's slot to come back")
    finally:
        for response in held:
            response.close()


def test_a_stream_ends_at_its_time_limit_and_resumes_with_last_event_id(start_api, start_worker):
    api = start_api(SSE_MAX_DURATION_S="2")
    start_worker()
    job = submit(api, {"prompt": f"slow {directive(tokens=150, chunk_delay_ms=40)}"})  # ~6 s
    first = read_stream(api, job["id"])  # ends by itself, before the job does
    assert first and all(e.event == "progress" for e in first), [e.event for e in first]
    events = list(first)
    while events[-1].event == "progress":
        events += read_stream(api, job["id"], last_event_id=events[-1].id)
    assert events[-1].event == "succeeded"
    assert progress_text(events) == get(api, job["id"])["result"]["text"]


def test_a_last_event_id_redis_would_refuse_is_a_json_422(start_api):
    api = start_api()
    job = submit(api, {"prompt": "never runs"})
    too_large = ("99999999999999999999-0", "0-99999999999999999999", "18446744073709551616-0", "1" * 400 + "-0")
    for last_event_id in too_large:
        headers = {**ALICE, "Last-Event-ID": last_event_id}
        response = requests.get(f"{api}/v1/jobs/{job['id']}/events", headers=headers, timeout=10)
        assert response.status_code == 422, (last_event_id, response.status_code, response.text[:200])
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["code"] == 422
    # the largest id Redis takes is still an id: the stream opens
    assert stream_status(api, job["id"], {**ALICE, "Last-Event-ID": "18446744073709551615-18446744073709551615"}) == 200
