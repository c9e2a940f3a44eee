"""Concurrent cancel or retry of one job, against gunicorn with several threads: one
request wins, the others get a JSON 409 and change nothing."""

from __future__ import annotations

import requests

from tests.support.concurrency import all_at_once
from tests.support.event_stream import read_stream
from tests.support.jobs import get, submit, wait_until_finished
from tests.support.keys import ALICE
from tests.support.prometheus import scrape, value

RACERS = 8


def race(api: str, job_id: str, action: str) -> list[requests.Response]:
    return all_at_once(RACERS, lambda: requests.post(f"{api}/v1/jobs/{job_id}/{action}", headers=ALICE, timeout=30))


def assert_one_winner(responses: list[requests.Response], winner_code: int) -> None:
    codes = sorted(r.status_code for r in responses)
    assert codes == sorted([winner_code] + [409] * (RACERS - 1)), [(r.status_code, r.text[:120]) for r in responses]
    for response in responses:
        assert response.headers["Content-Type"] == "application/json"
        assert response.json().get("code", response.status_code) == response.status_code


def test_concurrent_cancels_of_a_queued_job_have_one_winner(start_api, redis_conn):
    api = start_api(GUNICORN_THREADS="16")  # no worker: the job stays queued
    job = submit(api, {"prompt": "never runs"})

    assert_one_winner(race(api, job["id"], "cancel"), 200)
    assert get(api, job["id"])["status"] == "canceled"
    assert [e.event for e in read_stream(api, job["id"])] == ["canceled"]  # its end was announced once


def test_concurrent_retries_have_one_winner_whose_run_is_left_alone(start_api, start_worker, redis_conn):
    api = start_api(GUNICORN_THREADS="16")
    job = submit(api, {"prompt": "short [[fake: tokens=3]]"})
    requests.post(f"{api}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10)

    assert_one_winner(race(api, job["id"], "retry"), 202)
    assert redis_conn.lrange("rq:queue:default", 0, -1) == [job["id"].encode()]  # queued once
    assert value(scrape(api), "llmjobs_job_retries_total", queue="default", reason="requested") == 1

    start_worker()
    done = wait_until_finished(api, job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1
    events = read_stream(api, job["id"])
    assert [e.event for e in events if e.event != "progress"] == ["succeeded"]
    # retries of a job that succeeded all lose, and leave its events as they were
    assert [r.status_code for r in race(api, job["id"], "retry")] == [409] * RACERS
    assert read_stream(api, job["id"]) == events
