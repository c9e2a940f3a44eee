"""Jobs over the API of a running stack (`api` is its base URL): submit, read, wait for the end."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import requests

from tests.support.keys import ALICE
from tests.support.waiting import wait_for

TERMINAL = {"succeeded", "failed", "canceled"}


def submit(api: str, body: dict, headers: dict = ALICE) -> dict:
    response = requests.post(f"{api}/v1/jobs", json=body, headers=headers, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()


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
