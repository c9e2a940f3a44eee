"""What more than one test module uses: calls on the running API, fake-provider prompts,
webhook, event-stream, dashboard and CLI helpers, the error-shape assertion. Test modules
import these from here, never from each other; fixtures stay in conftest.py."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import requests
from httpx_sse import EventSource
from rq.job import Job

from service.jobs.running.progress import record_result, start_attempt
from service.jobs.storage.admission import Gate
from service.jobs.storage.queues import SERIALIZER, make_queues
from service.jobs.storage.submit import NewJob, submit_job
from tests.conftest import ALICE, ALICE_KEY, BIN, ROOT, wait_for

# --- jobs over the API (a running gunicorn)
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


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


# --- prompts that script the fake provider (fake_anthropic)
# Short waits so the suite stays quick; the policy itself is the production one.
FAST_RETRIES = {"RETRY_BASE_S": "0.2", "RETRY_MAX_S": "1", "LLM_MAX_ATTEMPTS": "3"}


def directive(**fields: object) -> str:
    return "[[fake: " + " ".join(f"{k}={v}" for k, v in fields.items()) + "]]"


def fails_first(times: int, **fields: object) -> str:
    """A prompt whose first `times` provider calls fail as `fields` say, then succeed."""
    return f"flaky {directive(fail_times=times, key=uuid.uuid4().hex, **fields)}"


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


# --- webhooks
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


WEBHOOKS_ON = {"WEBHOOK_SECRET": SECRET, "CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32", "WEBHOOK_RETRY_SCHEDULE": "1,1,1"}


def webhook_of(api: str, job_id: str, state: str, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (hook := get(api, job_id)["webhook"]) and hook["state"] == state and hook, timeout=timeout,
        what=f"the webhook to be {state}",
    )  # fmt: skip


# --- the event stream (SSE)
@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: Any


def events_of(response: httpx.Response) -> Iterator[Event]:
    """The server-sent events of a response (parsed by httpx-sse; data as JSON). Once an id
    was seen, httpx-sse 0.4 also yields an empty event for the blank line after a
    `: keep-alive` comment: no event, by the spec."""
    for sse in EventSource(response).iter_sse():
        if sse.data:
            yield Event(sse.id, sse.event, json.loads(sse.data))


def read_stream(api: str, job_id: str, last_event_id: str | None = None, limit: int | None = None) -> list[Event]:
    """Events until the server closes the stream (or `limit` events have come)."""
    headers = {**ALICE, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    events = []
    with httpx.stream("GET", f"{api}/v1/jobs/{job_id}/events", headers=headers, timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for event in events_of(response):
            events.append(event)
            if limit is not None and len(events) >= limit:
                break
    return events


def progress_text(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "progress")


# --- rq-dashboard
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


# --- the error shape
ERROR_KEYS = {"code", "status", "message", "errors"}


def assert_error_shape(response, code: int | None = None) -> dict[str, Any]:
    """The one error shape (docs/api.md), for Flask's test responses and schemathesis' alike
    (schemathesis lowercases header names and gives each a list of values)."""
    headers = {name.lower(): value for name, value in response.headers.items()}
    content_type = headers.get("content-type", "")
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    text = response.text
    if code is not None:
        assert response.status_code == code, text
    assert content_type.startswith("application/json"), text
    body = json.loads(text)
    assert isinstance(body, dict) and set(body) <= ERROR_KEYS, body
    assert body["code"] == response.status_code, body
    assert body["status"] == HTTPStatus(response.status_code).phrase, body
    assert isinstance(body["message"], str) and body["message"].strip(), body
    return body


# --- jobs in-process on a real Redis (no API, no worker)
DEFAULT_MODEL = "claude-sonnet-5-5"


def started_runs(redis_conn, model: str, runs: int = 1) -> list[Job]:
    """`runs` fetched copies of one new job, each having started its attempt (a job that ran twice)."""
    request = {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    new = NewJob(priority="default", request=request, metadata={}, timeout_s=60)
    submitted = submit_job(
        redis_conn, make_queues(redis_conn), new, gate=Gate.unlimited("alice"), max_attempts=3, result_ttl_s=600
    )
    copies = [Job.fetch(submitted.job.id, connection=redis_conn, serializer=SERIALIZER) for _ in range(runs)]
    for job in copies:
        start_attempt(job)
    return copies


def complete(job: Job, input_tokens: int, output_tokens: int, cost: float | None) -> dict:
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    message = {
        "role": "assistant",
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": "end_turn",
        "usage": usage,
    }
    return record_result(
        job, message=message, text="x", output=None, usage=usage, cost_usd=cost, keep_for_s=600, usage_retention_days=3
    )


# --- the llmjobs console script
LLMJOBS = str(BIN / "llmjobs")  # the console script the package installs


def run_cli(*args: str, url: str | None = None, key: str | None = ALICE_KEY, timeout: float = 60, **popen):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMJOBS_")}
    if url is not None:
        env["LLMJOBS_URL"] = url
    if key is not None:
        env["LLMJOBS_API_KEY"] = key
    return subprocess.run(
        [LLMJOBS, *args], cwd=ROOT, env=env, capture_output="stdout" not in popen, text=True, timeout=timeout, **popen
    )


# --- callback receivers
class Listener:
    """An HTTP server on `host:port` that records every request it gets (line and Host)."""

    def __init__(self, host: str, port: int = 0):
        self.requests: list[tuple[str, str]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                listener.requests.append((self.requestline, self.headers.get("Host", "")))
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def allowed_and_internal() -> Iterator[tuple[Listener, Listener]]:
    """An allowed receiver on 127.0.0.1 and an "internal" service on 127.0.0.2, same port."""
    allowed = Listener("127.0.0.1")
    internal = Listener("127.0.0.2", allowed.port)
    try:
        yield allowed, internal
    finally:
        allowed.close()
        internal.close()


@contextlib.contextmanager
def fake_in_thread(**options: Any) -> Iterator[str]:
    """The fake Anthropic server's app (`create_app(**options)`) served in a thread of the test
    process; yields its base URL. For tests of the fake itself, which need no process of it."""
    from werkzeug.serving import make_server

    from fake_anthropic import create_app

    server = make_server("127.0.0.1", 0, create_app(**options), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
