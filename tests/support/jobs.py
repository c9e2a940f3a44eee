"""Jobs through the API: over HTTP to a running API (`api`, its base URL), or through Flask's
test client (`client`, the app in the test's process). `post_job` and `post_job_in_app` give
the answer as it comes, for the tests of refusals; `submit` and `submit_in_app` assert the 202
and give the accepted job."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.support.keys import ALICE
from tests.support.waiting import wait_for

TERMINAL = {"succeeded", "failed", "canceled"}


def post_job(api: str, body: dict, headers: dict = ALICE, *, timeout: float = 10) -> requests.Response:
    """`POST /v1/jobs` with `body` as JSON; `timeout` is the client's own bound."""
    return requests.post(f"{api}/v1/jobs", json=body, headers=headers, timeout=timeout)


def submit(api: str, body: dict, headers: dict = ALICE, *, timeout: float = 10) -> dict:
    """A job the API accepted: the 202's body."""
    response = post_job(api, body, headers, timeout=timeout)
    assert response.status_code == 202, response.text
    return response.json()


def post_job_in_app(client: FlaskClient, body: Any = None, headers: dict = ALICE) -> TestResponse:
    """`POST /v1/jobs` with `body` as JSON (any JSON, for the tests of invalid ones), by
    default `{"prompt": "hi"}`."""
    return client.post("/v1/jobs", json={"prompt": "hi"} if body is None else body, headers=headers)


def submit_in_app(client: FlaskClient, body: Any = None, headers: dict = ALICE) -> dict:
    """A job the app accepted: the 202's body."""
    response = post_job_in_app(client, body, headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()


def get(api: str, job_id: str, headers: dict = ALICE) -> dict:
    response = requests.get(f"{api}/v1/jobs/{job_id}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until_finished(api: str, job_id: str, timeout: float = 30) -> dict:
    return wait_for(lambda: (job := get(api, job_id))["status"] in TERMINAL and job, timeout, what=f"job {job_id}")


def watch(api: str, job_id: str, until: set[str], timeout: float = 30) -> list[dict]:
    """Every distinct state the job shows while polling, until its status is in `until`."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(api, job_id)
        if not seen or job != seen[-1]:
            seen.append(job)
        if job["status"] in until:
            return seen
        time.sleep(0.03)
    pytest.fail(f"job {job_id} never reached {until}; last seen {seen[-1]}")


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))
