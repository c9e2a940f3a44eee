"""rq-dashboard, mounted by the API at /dashboard behind the operator's password."""

from __future__ import annotations

import uuid

import requests

from tests.support.fake_server import directive
from tests.support.jobs import submit, wait_until_finished

OPERATOR = {"DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "s3cret-dashboard-pw"}


AUTH = ("ops", "s3cret-dashboard-pw")


def dashboard(api: str, path: str, method: str = "GET", **kwargs) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    return requests.request(method, f"{api}/dashboard/{path}", timeout=10, **kwargs)


def failed_job_carrying(api: str, payload: str) -> dict:
    """A job that fails at once (a provider 400) with `payload` in its metadata, prompt and system."""
    prompt = f"{payload} {directive(fail_times=1, key=uuid.uuid4().hex, error=400)}"
    job = submit(api, {"prompt": prompt, "system": payload, "metadata": {"n": payload, "<i>k</i>": "v"}})
    assert wait_until_finished(api, job["id"])["status"] == "failed"
    return job
