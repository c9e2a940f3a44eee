"""Bug reports end to end: the API and a worker as real processes with SENTRY_DSN pointing at
a receiver in the test, which reads the envelopes the real sentry-sdk sends. A bug is
reported once, tagged; an expected failure is not; no key, secret or prompt leaves."""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from rq import Queue
from rq.job import Job, JobStatus

from service.jobs.storage.keys import UNPUBLISHED_ENDS_KEY
from service.jobs.storage.queues import LLM_TASK, SERIALIZER
from service.jobs.storage.record import new_meta
from tests.support.fake_server import FAST_RETRIES
from tests.support.jobs import get, submit, wait_until_finished
from tests.support.keys import ALICE, ALICE_KEY, BOB_KEY
from tests.support.waiting import wait_for
from tests.support.webhooks import SECRET, WEBHOOKS_ON

SECRET_PROMPT = "the-secret-launch-code-4711"
PROJECT = "42"


@dataclass
class SentryReceiver:
    """Sentry's envelope endpoint (`POST /api/<project>/envelope/`), as sentry-sdk sends to it."""

    dsn: str = ""
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                assert self.path == f"/api/{PROJECT}/envelope/", self.path
                with receiver.lock:
                    receiver.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://public0123456789abcdef@127.0.0.1:{server.server_port}/{PROJECT}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def events(self) -> list[dict]:
        with self.lock:
            bodies = list(self.bodies)
        return [json.loads(payload) for body in bodies for kind, payload in envelope_items(body) if kind == "event"]


def envelope_items(body: bytes) -> list[tuple[str, bytes]]:
    """An envelope's items as (type, payload): a header line, then per item a header line
    and a payload of its `length`, or up to the next newline."""
    _envelope_header, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header["type"], payload))
    return items


@pytest.fixture
def sentry():
    receiver = SentryReceiver()
    server = receiver.serve()
    yield receiver
    server.shutdown()
    server.server_close()


def test_bugs_are_reported_once_tagged_and_expected_failures_never(start_api, start_worker, redis_conn, sentry):
    env = {**WEBHOOKS_ON, **FAST_RETRIES, "SENTRY_DSN": sentry.dsn, "WORKER_CONCURRENCY": "4"}
    api = start_api(**env)
    start_worker(**env)

    # Expected ends of jobs, none of them a bug: the provider refuses, retries run out, a cancel.
    hanging = submit(api, {"prompt": f"{SECRET_PROMPT} [[fake: hang=1]]"})
    refused = submit(api, {"prompt": f"{SECRET_PROMPT} [[fake: error=400]]"})
    exhausted = submit(api, {"prompt": f"{SECRET_PROMPT} [[fake: error=500]]"})
    wait_for(lambda: get(api, hanging["id"])["status"] == "running", what="the hanging job to run")
    requests.post(f"{api}/v1/jobs/{hanging['id']}/cancel", headers=ALICE, timeout=10)
    ends = {job["id"]: wait_until_finished(api, job["id"])["status"] for job in (refused, exhausted, hanging)}
    assert ends == {refused["id"]: "failed", exhausted["id"]: "failed", hanging["id"]: "canceled"}
    assert get(api, exhausted["id"])["attempts"] == 3

    # A bug in a task: a job that another version of the service queued, whose request this
    # one cannot read. Its prompt is in the task's local variables, which must not leave.
    request = {
        "model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "user", "content": SECRET_PROMPT}],
        "a_field_of_a_later_version": True,
    }  # fmt: skip
    meta = new_meta(
        client="alice", priority="default", model="claude-sonnet-5-5", metadata={}, timeout_s=60,
        attempt_limit=3, callback_url=None,
    )  # fmt: skip
    unreadable = Queue("default", connection=redis_conn, serializer=SERIALIZER).enqueue(
        LLM_TASK, kwargs={"request": request}, meta=meta
    )
    # A bug in the API: a record that lost its fields (written by another tool) answers 500.
    broken_id = uuid.uuid4().hex
    Job.create(LLM_TASK, connection=redis_conn, serializer=SERIALIZER, id=broken_id, meta={"client": "alice"}).save()
    assert requests.get(f"{api}/v1/jobs/{broken_id}", headers=ALICE, timeout=10).status_code == 500

    wait_for(lambda: len(sentry.events()) >= 2, what="two bug reports")
    assert unreadable.get_status(refresh=True) == "failed"  # with the traceback, as before
    events = sentry.events()
    by_process = {event["tags"]["process"]: event for event in events}
    assert len(events) == 2 and set(by_process) == {"api", "worker"}, [e["tags"] for e in events]

    task_bug = by_process["worker"]
    assert task_bug["exception"]["values"][-1]["type"] == "TypeError"
    assert {name: task_bug["tags"].get(name) for name in ("job_id", "client", "queue", "kind", "task")} == {
        "job_id": unreadable.id, "client": "alice", "queue": "default", "kind": "message", "task": "message job",
    }  # fmt: skip
    api_bug = by_process["api"]
    assert api_bug["exception"]["values"][-1]["type"] == "KeyError"
    assert api_bug["exception"]["values"][-1]["value"].endswith("characters, not sent)")  # the message stays home
    assert {name: api_bug["tags"].get(name) for name in ("job_id", "client", "route", "method")} == {
        "job_id": broken_id, "client": "alice", "route": "/v1/jobs/<job_id>", "method": "GET",
    }  # fmt: skip

    # Nothing secret in anything sent: no frame's local variables, no request headers or body.
    sent = b"".join(sentry.bodies)
    for secret in (SECRET_PROMPT, ALICE_KEY, BOB_KEY, SECRET, "test-key"):
        assert secret.encode() not in sent, secret
    for event in events:
        # None of sentry-sdk's integrations that patch libraries (Anthropic, RQ, logging, HTTP)
        assert event["sdk"]["integrations"] == ["atexit", "dedupe", "excepthook"]
        frames = [frame for value in event["exception"]["values"] for frame in value["stacktrace"]["frames"]]
        assert frames and not any("vars" in frame for frame in frames)
        assert "request" not in event and not event.get("breadcrumbs", {}).get("values")


def test_a_scheduler_that_meets_a_bug_reports_it_once_and_goes_on(start_scheduler, redis_conn, sentry):
    # A job whose end was left unpublished (its publisher died), and whose record lost its
    # fields since (another tool rewrote it): the scheduler's republishing cannot read it.
    job = Job.create(LLM_TASK, connection=redis_conn, serializer=SERIALIZER, meta={"client": "alice"})
    job.set_status(JobStatus.FAILED)
    job.save()
    redis_conn.zadd(UNPUBLISHED_ENDS_KEY, {job.id: time.time() - 3600})
    scheduler = start_scheduler(SENTRY_DSN=sentry.dsn)

    wait_for(lambda: redis_conn.zscore(UNPUBLISHED_ENDS_KEY, job.id) is None, timeout=60, what="the end dropped")
    time.sleep(3)  # several polls more: the same record is not reported again
    (event,) = sentry.events()
    assert event["tags"]["process"] == "scheduler" and event["tags"]["job_id"] == job.id
    assert event["exception"]["values"][-1]["type"] == "KeyError"
    assert scheduler.poll() is None  # it goes on: its clean-up and retries do not stop at a bad record
