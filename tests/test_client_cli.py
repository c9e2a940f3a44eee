"""The client package (clients/python: `llmjobs`) against the real stack (gunicorn,
worker.py, Redis, the fake Anthropic server), its `llmjobs` console script as a
subprocess, and stand-in servers for what the stack cannot be made to do on cue (a 503
on every answer, hostile model text)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import standardwebhooks
from llmjobs import (
    APIConnectionError,
    APIError,
    AsyncJobsClient,
    AuthenticationError,
    BudgetExceededError,
    ConflictError,
    Job,
    JobsClient,
    NotFoundError,
    ProgressUpdate,
    ServerError,
    ServiceUnavailableError,
    ValidationError,
    WaitTimeout,
    WebhookVerificationError,
    verify_webhook,
)
from llmjobs.errors import error_from_response

from tests.support.cli import run_cli
from tests.support.fake_server import FAST_RETRIES, directive
from tests.support.keys import ALICE_KEY, BOB_KEY
from tests.support.network import free_port
from tests.support.waiting import wait_for


class Recorder:
    """Sleeps nothing, on a fake clock, remembering each pause."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


# --------------------------------------------------------------------------- unit: errors and webhooks


def test_error_mapping_without_a_json_body():
    error = error_from_response(httpx.Response(502, content=b"<html>Bad Gateway</html>"))
    assert type(error) is ServerError and error.status_code == 502 and error.code == 502
    assert error.message == "<html>Bad Gateway</html>"

    body = {"code": 503, "status": "Service Unavailable", "message": "the job store is down"}
    error = error_from_response(httpx.Response(503, json=body, headers={"Retry-After": "5"}))
    assert isinstance(error, ServiceUnavailableError) and isinstance(error, ServerError)
    assert (error.message, error.retry_after, error.errors) == ("the job store is down", 5.0, None)

    error = error_from_response(httpx.Response(413, content=b""))
    assert error.message == "Request Entity Too Large" and error.status_code == 413

    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 < error_from_response(httpx.Response(429, json={}, headers={"Retry-After": later})).retry_after <= 30


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
JOB = {"id": "j1", "status": "succeeded", "result": {"text": "hé", "usage": {"input_tokens": 1}}, "attempts": 1}


def signed(body: str, when: datetime | None = None, secret: str = SECRET) -> dict[str, str]:
    when = when or datetime.now(UTC)
    msg_id = f"msg_{uuid.uuid4().hex}"
    signature = standardwebhooks.Webhook(secret).sign(msg_id, when, body)
    return {"Webhook-Id": msg_id, "Webhook-Timestamp": str(int(when.timestamp())), "Webhook-Signature": signature}


def test_verify_webhook_returns_the_typed_payload():
    payload = {"type": "job.succeeded", "timestamp": "2026-11-21T05:24:18.831Z", "data": JOB}
    body = json.dumps(payload)
    headers = signed(body)
    event = verify_webhook(body.encode(), headers, SECRET)
    assert event.type == "job.succeeded" and event.raw == payload
    assert event.timestamp == datetime(2026, 11, 21, 5, 24, 18, 831000, tzinfo=UTC)
    assert isinstance(event.data, Job) and event.data.result.text == "hé" and event.data.result.usage.input_tokens == 1
    assert verify_webhook(body, httpx.Headers(headers), SECRET) == event

    batch = {"id": "b1", "status": "done", "counts": {"succeeded": 2}, "job_ids": ["a", "b"]}
    body = json.dumps({"type": "batch.done", "timestamp": None, "data": batch})
    assert verify_webhook(body, signed(body), SECRET).data.counts.succeeded == 2

    rejected = [
        (body.replace("done", "running"), headers),  # tampered body
        (body, signed(body, datetime.now(UTC) - timedelta(minutes=10))),  # replayed: too old
        (body, signed(body, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUA==")),  # another secret
        (body, {**headers, "Webhook-Signature": "garbage"}),  # malformed
        (body, {k: v for k, v in headers.items() if k != "Webhook-Id"}),  # missing header
    ]
    for data, hdrs in rejected:
        with pytest.raises(WebhookVerificationError) as info:
            verify_webhook(data, hdrs, SECRET)
        assert isinstance(info.value, standardwebhooks.WebhookVerificationError)


# --------------------------------------------------------------------------- retries, against a stand-in


class StandIn:
    """A stand-in API on a real socket: answers every request with `answer(handler)`
    (status, headers, body) and records the requests' paths and headers."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def respond(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stand_in.requests.append((self.command, self.path, dict(self.headers.items())))
                status, headers, body = answer(self)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = respond

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def unavailable(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"code": 503, "status": "Service Unavailable", "message": "queue full"}).encode()
    return 503, {"Retry-After": "3", "Content-Type": "application/json"}, body


def test_submits_and_reads_are_retried_after_retry_after_but_changes_are_not():
    stand_in = StandIn(unavailable)
    recorder = Recorder()
    try:
        client = JobsClient(stand_in.url, ALICE_KEY, max_retries=2, sleep=recorder.sleep)
        with pytest.raises(ServiceUnavailableError):
            client.submit("hello")
        sent = stand_in.requests
        assert [(method, path) for method, path, _ in sent] == [("POST", "/v1/jobs")] * 3
        keys = {headers["Idempotency-Key"] for _, _, headers in sent}
        assert len(keys) == 1 and keys.pop().startswith("llmjobs-")  # one key: the resends are the same submit
        assert len(recorder.pauses) == 2 and all(pause >= 3 for pause in recorder.pauses)  # Retry-After

        sent.clear()
        with pytest.raises(ServiceUnavailableError):
            client.get("j1")
        assert len(sent) == 3

        sent.clear()
        with pytest.raises(ServiceUnavailableError):
            client.cancel("j1")  # not idempotent: sent once
        with pytest.raises(ServiceUnavailableError):
            JobsClient(stand_in.url, ALICE_KEY, max_retries=0).get("j1")
        assert len(sent) == 2
    finally:
        stand_in.close()


def test_a_call_that_never_reached_the_server_is_retried_even_when_not_idempotent():
    recorder = Recorder()
    client = JobsClient(f"http://127.0.0.1:{free_port()}", ALICE_KEY, max_retries=3, sleep=recorder.sleep)
    with pytest.raises(APIConnectionError) as info:
        client.cancel("j1")
    assert info.value.sent is False and len(recorder.pauses) == 3
    assert all(0 <= pause <= 8 for pause in recorder.pauses)


def test_stream_reconnects_with_back_off_until_reconnect_timeout():
    recorder = Recorder()
    client = JobsClient(f"http://127.0.0.1:{free_port()}", ALICE_KEY, sleep=recorder.sleep, clock=recorder.clock)
    with pytest.raises(APIConnectionError, match="gave up after reconnecting for 60 s"):
        list(client.stream("some-job"))
    assert recorder.pauses[:5] == [0.5, 1, 2, 4, 5] and set(recorder.pauses[4:]) == {5}
    assert 55 < sum(recorder.pauses) <= 60


# --------------------------------------------------------------------------- the console script, no stack


def test_cli_needs_a_key_and_a_reachable_url():
    missing = run_cli("get", "some-id", url="http://127.0.0.1:1", key=None)
    assert missing.returncode == 2
    assert "LLMJOBS_API_KEY" in missing.stderr and "Traceback" not in missing.stderr

    down = run_cli("get", "some-id", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2
    assert down.stderr.startswith("error:") and "Traceback" not in down.stderr


# --------------------------------------------------------------------------- the real stack


def test_wait_backoff_schedule_then_submit_wait_get_list_and_typed_errors(start_api, start_worker):
    api = start_api()
    # No worker yet: the job stays queued, and wait() runs out on a fake clock.
    recorder = Recorder()
    client = JobsClient(api, ALICE_KEY, sleep=recorder.sleep, clock=recorder.clock)
    queued = client.submit("still queued " + directive(tokens=3))
    seen: list[Job] = []
    with pytest.raises(WaitTimeout) as info:
        client.wait(queued.id, timeout=20, on_update=seen.append)
    assert recorder.pauses == [1, 1.5, 2.25, 3.375, 5, 5, 1.875]
    assert info.value.job.id == queued.id and info.value.job.status == "queued" and len(seen) == 8

    start_worker()
    client = JobsClient(api, ALICE_KEY)
    key = uuid.uuid4().hex
    job = client.submit(
        "Tell me about queues " + directive(tokens=12), priority="high", metadata={"ticket": "T-1"}, idempotency_key=key
    )
    assert job.status == "queued" and job.priority == "high" and job.created_at.tzinfo is not None
    done = client.wait(job.id, timeout=30)
    assert done.status == "succeeded" and done.done, done
    assert done.result.usage.output_tokens == 12 and done.result.usage.input_tokens > 0
    assert done.result.cost_usd > 0 and done.metadata == {"ticket": "T-1"}
    assert done.finished_at >= done.started_at >= done.created_at
    assert client.get(job.id) == done and client.get(job.id).raw == done.raw
    assert client.wait(queued.id, timeout=30).status == "succeeded"

    # Idempotency: the same request returns the job; another body under the key is a 409.
    again = client.submit(
        "Tell me about queues " + directive(tokens=12), priority="high", metadata={"ticket": "T-1"}, idempotency_key=key
    )
    assert again.id == job.id
    with pytest.raises(ConflictError):
        client.submit("something else", idempotency_key=key)
    # Without a key of the caller's, each submit is a new job (the client's own key differs).
    assert client.submit("twice " + directive(tokens=1)).id != client.submit("twice " + directive(tokens=1)).id

    page = client.list(limit=1)
    assert len(page.data) == 1 and page.next_cursor
    everything = client.list(limit=10)
    assert [j.id for j in everything.data][-2:] == [job.id, queued.id] and everything.next_cursor is None
    assert {j.id for j in client.list(status="succeeded").data} >= {job.id, queued.id}

    # Typed errors.
    with pytest.raises(AuthenticationError) as auth:
        JobsClient(api, "not-a-valid-key-at-all").get(job.id)
    assert auth.value.status_code == 401 and auth.value.message
    with pytest.raises(NotFoundError) as missing:
        client.get("no-such-job")
    assert missing.value.status_code == 404 and missing.value.code == 404
    with pytest.raises(NotFoundError):
        JobsClient(api, BOB_KEY).get(job.id)  # another client's job
    with pytest.raises(ValidationError) as invalid:
        client.submit("hi", max_tokens=0)
    assert invalid.value.status_code == 422 and "max_tokens" in json.dumps(invalid.value.errors)
    with pytest.raises(ConflictError) as finished:
        client.cancel(job.id)
    assert finished.value.status_code == 409 and isinstance(finished.value, APIError)
    with pytest.raises(ConflictError):
        client.retry(job.id)
    with pytest.raises(ConflictError):
        client.redeliver_webhook(job.id)  # it had no callback_url


def test_get_polls_with_the_etag_and_an_unchanged_job_costs_no_body(start_api):
    api = start_api()  # no worker: the job stays queued, unchanged
    answers: list[int] = []
    http = httpx.Client(event_hooks={"response": [lambda response: answers.append(response.status_code)]})
    client = JobsClient(api, ALICE_KEY, http_client=http)
    job = client.submit("hello")

    first, second, third = (client.get(job.id) for _ in range(3))

    assert answers == [202, 200, 304, 304]
    assert first == second == third and first.id == job.id
    second.raw["status"] = "changed by the caller"  # each answer is the caller's own copy
    assert client.get(job.id).status == "queued"


def test_cancel_a_running_job_and_retry_it(start_api, start_worker):
    api = start_api(**FAST_RETRIES)
    start_worker(**FAST_RETRIES)
    client = JobsClient(api, ALICE_KEY)
    job = client.submit("long " + directive(tokens=400, chunk_delay_ms=50))
    wait_for(lambda: client.get(job.id).progress.output_tokens > 2, what="streaming to start")
    assert client.cancel(job.id).status == "running"  # 202: it stops within a second
    done = client.wait(job.id, timeout=10)
    assert done.status == "canceled" and done.progress.text
    # The answer shows the job as it is after the re-queue: an idle worker may have taken it already.
    assert client.retry(job.id).status in {"queued", "running"}
    assert client.cancel(job.id).status in {"canceled", "running"}
    assert client.wait(job.id, timeout=10).status == "canceled"


def test_batches_and_usage(start_api, start_worker):
    api = start_api()
    start_worker()
    client = JobsClient(api, ALICE_KEY)
    batch = client.submit_batch(
        ["one " + directive(tokens=3), {"prompt": "two " + directive(tokens=4), "priority": "high"}],
        metadata={"run": "7"},
    )
    assert batch.status == "running" and len(batch.job_ids) == 2 and batch.metadata == {"run": "7"}
    done = client.wait_batch(batch.id, timeout=30)
    assert done.done and done.counts.succeeded == 2 and done.finished_at is not None
    assert client.get(done.job_ids[1]).priority == "high"
    with pytest.raises(ConflictError):
        client.redeliver_batch_webhook(batch.id)  # no callback_url
    with pytest.raises(NotFoundError):
        JobsClient(api, BOB_KEY).get_batch(batch.id)

    report = client.usage(group_by="model")
    assert report.group_by == "model" and report.total.jobs == 2 and report.total.output_tokens == 7
    (row,) = report.data
    assert row.figures == report.total and row.key == client.get(done.job_ids[0]).model
    today = datetime.now(UTC).date()
    by_day = client.usage(date_from=today, date_to=today.isoformat())
    assert (by_day.date_from, by_day.date_to, [r.key for r in by_day.data]) == (today, today, [today.isoformat()])


def test_the_client_and_the_cli_show_the_spend_budget_and_its_refusal(start_api):
    api = start_api(CLIENT_BUDGETS="alice=0.05/day")
    client = JobsClient(api, ALICE_KEY)
    client.submit("small", max_tokens=100)

    budget = client.usage().budget
    assert budget is not None and (budget.limit, budget.window, budget.spent) == (0.05, "day", 0)
    assert budget.reserved > 0 and budget.remaining == pytest.approx(0.05 - budget.reserved)
    assert budget.resets_at is not None and budget.resets_at.date() == datetime.now(UTC).date() + timedelta(days=1)
    assert JobsClient(api, BOB_KEY).usage().budget is None
    with pytest.raises(BudgetExceededError) as refused:
        client.submit("large", max_tokens=10_000)  # 0.10 USD of output alone
    assert refused.value.status_code == 429 and refused.value.retry_after is not None
    assert refused.value.errors["needed"] > refused.value.errors["limit"] - refused.value.errors["reserved"]

    shown = run_cli("usage", url=api)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[-1].startswith(f"budget: 0.000000 spent + {budget.reserved:.6f} reserved of 0.05")
    refused_cli = run_cli("submit", "large", "--max-tokens", "10000", url=api)
    assert refused_cli.returncode == 2 and "spend budget" in refused_cli.stderr


def test_the_async_client(start_api, start_worker):
    api = start_api()
    start_worker()

    async def scenario() -> None:
        async with AsyncJobsClient(api, ALICE_KEY) as client:
            job = await client.submit("async " + directive(tokens=20, chunk_delay_ms=10))
            events = [event async for event in client.stream(job.id)]
            assert events[-1].event == "succeeded" and isinstance(events[-1].data, Job)
            assert all(isinstance(e.data, ProgressUpdate) for e in events[:-1])
            assert "".join(e.data.text for e in events[:-1]) == events[-1].data.result.text
            assert await client.wait(job.id, timeout=10) == events[-1].data
            assert (await client.list(limit=5)).data[0].id == job.id
            batch = await client.submit_batch(["a " + directive(tokens=2)])
            assert (await client.wait_batch(batch.id, timeout=30)).counts.succeeded == 1
            assert (await client.usage()).total.jobs == 2
            with pytest.raises(NotFoundError):
                await client.get("no-such-job")
            with pytest.raises(ConflictError):
                await client.cancel(job.id)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- streams


def test_stream_progress_then_one_terminal_event_and_resume(start_api, start_worker):
    api = start_api()
    start_worker()
    client = JobsClient(api, ALICE_KEY)
    job = client.submit("stream me " + directive(tokens=30, chunk_delay_ms=20))

    events = list(client.stream(job.id))
    kinds = [e.event for e in events]
    assert kinds[-1] == "succeeded" and kinds[:-1] == ["progress"] * (len(events) - 1), kinds
    assert len(events) >= 5 and events[-1].terminal
    final = events[-1].data
    assert final.id == job.id and final.status == "succeeded"
    assert "".join(e.data.text for e in events[:-1]) == final.result.text
    assert {e.data.attempt for e in events[:-1]} == {1}
    assert events[-2].data.output_tokens <= 30
    assert len({e.id for e in events}) == len(events)

    # Resuming after the 3rd event gives exactly the ones after it; after the end, all again.
    assert list(client.stream(job.id, last_event_id=events[2].id)) == events[3:]
    assert list(client.stream(job.id)) == events

    with pytest.raises(NotFoundError):
        list(JobsClient(api, BOB_KEY).stream(job.id))


def test_stream_survives_an_api_restart(start_api, start_worker, processes):
    port = free_port()
    api = start_api(port)
    start_worker()
    sent: list[str | None] = []  # each stream request's Last-Event-ID

    def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/events"):
            sent.append(request.headers.get("Last-Event-ID"))

    client = JobsClient(api, ALICE_KEY, http_client=httpx.Client(event_hooks={"request": [record]}))
    job = client.submit("interrupted " + directive(tokens=150, chunk_delay_ms=40))

    events = []
    for event in client.stream(job.id):
        events.append(event)
        if len(events) == 3:  # the whole API goes away mid-stream, and comes back on its port
            (api_process,) = [p for name, p, _ in processes.started if name == "api"]
            os.killpg(api_process.pid, signal.SIGKILL)
            api_process.wait()
            start_api(port)

    final = events[-1].data
    assert [e.event for e in events].count("succeeded") == 1 and events[-1].event == "succeeded"
    assert final.status == "succeeded"
    assert "".join(e.data.text for e in events[:-1]) == final.result.text  # no gap, no repeat
    assert len({e.id for e in events}) == len(events)
    assert len(sent) >= 2 and sent[0] is None  # it reconnected, resuming after an event it had
    assert all(resumed in [e.id for e in events[2:]] for resumed in sent[1:])


# --------------------------------------------------------------------------- the console script


def test_cli_submit_wait_get_list_and_errors(start_api, start_worker):
    api = start_api()
    start_worker()

    ok = run_cli(
        "submit", "hello " + directive(tokens=60, chunk_delay_ms=20), "--priority", "high", "--metadata", "a=1", "b=2",
        "--wait", "--json", url=api,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    job = json.loads(ok.stdout)
    assert job["status"] == "succeeded" and job["result"]["usage"]["output_tokens"] == 60
    assert job["metadata"] == {"a": "1", "b": "2"} and job["priority"] == "high"
    # the progress line (not a terminal: a line per change of state)
    assert f"job {job['id']}: succeeded" in ok.stderr and "running" in ok.stderr, ok.stderr

    got = run_cli("get", job["id"], url=api)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0].startswith(f"job {job['id']}: succeeded") and "60 output tokens" in lines[1]
    assert lines[2:] == job["result"]["text"].splitlines()
    assert json.loads(run_cli("get", job["id"], "--json", url=api).stdout) == job

    queued = run_cli("--json", "submit", "no wait " + directive(tokens=2), url=api)
    assert queued.returncode == 0 and json.loads(queued.stdout)["status"] == "queued"
    waited = run_cli("wait", json.loads(queued.stdout)["id"], url=api)
    assert waited.returncode == 0 and ": succeeded" in waited.stdout.splitlines()[0]

    listed = run_cli("list", "--limit", "1", url=api)
    assert listed.returncode == 0 and listed.stdout.startswith(json.loads(queued.stdout)["id"])
    assert "(more: --cursor " in listed.stdout

    failed = run_cli("submit", "bad " + directive(error=400), "--wait", "--json", url=api)
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout)["status"] == "failed"

    unknown = run_cli("get", "no-such-job", url=api)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "error 404" in unknown.stderr and "Traceback" not in unknown.stderr

    invalid = run_cli("submit", "hi", "--max-tokens", "0", url=api)
    assert invalid.returncode == 2 and "error 422" in invalid.stderr and "max_tokens" in invalid.stderr

    finished = run_cli("cancel", job["id"], url=api)
    assert finished.returncode == 2 and "error 409" in finished.stderr

    bad_key = run_cli("get", job["id"], url=api, key="not-a-valid-key-at-all")
    assert bad_key.returncode == 2 and "error 401" in bad_key.stderr

    # The reader goes away (`llmjobs get ... | head -0`): no traceback, the SIGPIPE exit status.
    reader, writer = os.pipe()
    os.close(reader)
    try:
        closed = run_cli("get", job["id"], "--json", url=api, stdout=writer, stderr=subprocess.PIPE)
    finally:
        os.close(writer)
    assert closed.returncode == 141 and closed.stderr == "", closed.stderr


def test_cli_batch_and_usage(start_api, start_worker, tmp_path):
    api = start_api()
    start_worker()
    requests_file = tmp_path / "jobs.jsonl"
    requests_file.write_text(json.dumps({"prompt": "from a file " + directive(tokens=4), "max_tokens": 50}) + "\n\n")

    batch = run_cli(
        "batch", "submit", "one " + directive(tokens=3), "two " + directive(tokens=3), "--file", str(requests_file),
        "--priority", "low", "--wait", url=api,
    )  # fmt: skip
    assert batch.returncode == 0, batch.stderr
    first, *ids = batch.stdout.splitlines()
    assert first.startswith("batch ") and first.endswith("done, 3 jobs: 3 succeeded") and len(ids) == 3
    assert "running" in batch.stderr or "queued" in batch.stderr  # the progress line
    batch_id = first.split()[1].rstrip(":")

    shown = json.loads(run_cli("batch", "get", batch_id, "--json", url=api).stdout)
    assert shown["id"] == batch_id and shown["counts"]["succeeded"] == 3
    assert [json.loads(run_cli("get", i.strip(), "--json", url=api).stdout)["priority"] for i in ids] == ["low"] * 3

    usage = run_cli("usage", "--group-by", "day", url=api)
    assert usage.returncode == 0, usage.stderr
    header, today, total = usage.stdout.splitlines()
    assert header.split() == ["DAY", "JOBS", "INPUT", "OUTPUT", "COST_USD"]
    assert today.split()[:2] == [datetime.now(UTC).date().isoformat(), "3"] and total.split()[:2] == ["total", "3"]
    assert json.loads(run_cli("usage", "--json", url=api).stdout)["total"]["output_tokens"] == 10

    empty = run_cli("batch", "submit", url=api)
    assert empty.returncode == 2 and "no jobs" in empty.stderr


def test_stream_shows_a_retry_and_tail_prints_the_text(start_api, start_worker):
    api = start_api(**FAST_RETRIES)
    start_worker(**FAST_RETRIES)
    client = JobsClient(api, ALICE_KEY)
    flaky = directive(fail_times=1, key=uuid.uuid4().hex, mid_stream_error="overloaded_error", after=3, tokens=10)
    job = client.submit("flaky " + flaky)

    events = list(client.stream(job.id))
    final = events[-1].data
    assert events[-1].event == "succeeded" and final.attempts == 2
    attempts = [e.data.attempt for e in events[:-1]]
    assert attempts == sorted(attempts) and attempts[0] == 1 and attempts[-1] == 2
    second = "".join(e.data.text for e in events[:-1] if e.data.attempt == 2)
    assert second == final.result.text

    # tail: its text on stdout, "[attempt 2]" and a summary on stderr.
    tailed = run_cli("tail", job.id, url=api)
    assert tailed.returncode == 0, tailed.stderr
    assert "[attempt 2]" in tailed.stderr and "succeeded" in tailed.stderr.splitlines()[-1]
    assert tailed.stdout.rstrip("\n").endswith(final.result.text)

    live = client.submit("live " + directive(tokens=30, chunk_delay_ms=20))
    tailed = run_cli("tail", live.id, url=api)
    assert tailed.returncode == 0, tailed.stderr
    done = client.get(live.id)
    assert tailed.stdout == done.result.text + "\n"
    summary = tailed.stderr.strip().splitlines()[-1]
    assert summary.startswith("succeeded") and "30 output tokens" in summary and "$" in summary
    as_json = [json.loads(line) for line in run_cli("tail", live.id, "--json", url=api).stdout.splitlines()]
    assert as_json[-1]["event"] == "succeeded" and as_json[-1]["data"] == done.raw
    assert "".join(e["data"]["text"] for e in as_json[:-1]) == done.result.text

    failing = client.submit("bad " + directive(error=400))
    tailed = run_cli("tail", failing.id, url=api)
    assert tailed.returncode == 1 and tailed.stderr.strip().splitlines()[-1].startswith("failed")


# --------------------------------------------------------------------------- tail and the terminal

# Model text is whatever the model wrote: colours, a screen clear, a window title, a
# clipboard write (OSC 52), a carriage return that overwrites the line, an 8-bit CSI.
HOSTILE_CHUNKS = ["Hello \x1b[31mred\x1b[0m", " \x1b]0;owned\x07ti\x1b[2Jtle", "\x1b]52;c;ZXZpbA==\x07 e\x9b1Knd\r\n"]


def tail_of(events: list[tuple[str, Any]]) -> subprocess.CompletedProcess:
    """`llmjobs tail j1` against a stand-in API whose event stream is `events` (name, data)."""
    body = "".join(
        f"id: {n}-0\nevent: {name}\ndata: {json.dumps(data)}\n\n" for n, (name, data) in enumerate(events, 1)
    ).encode()
    stand_in = StandIn(lambda handler: (200, {"Content-Type": "text/event-stream"}, body))
    try:
        return run_cli("tail", "j1", url=stand_in.url)
    finally:
        stand_in.close()


def test_tail_strips_terminal_control_sequences_from_model_text():
    job = {"id": "j1", "status": "failed", "attempts": 1, "progress": {"output_tokens": 9}, "result": None,
           "error": {"type": "api_error\x1b[2J", "message": "echoed \x1b]0;title\x07text"}}  # fmt: skip
    progress = [("progress", {"text": chunk, "attempt": 1, "output_tokens": 3}) for chunk in HOSTILE_CHUNKS]
    tailed = tail_of([*progress, ("failed", job)])

    assert tailed.returncode == 1, tailed.stderr
    assert tailed.stdout == "Hello red title end\n", repr(tailed.stdout)
    assert tailed.stderr.strip().splitlines()[-1] == "failed: 9 output tokens, cost unknown, api_error: echoed text"
    printed = tailed.stdout + tailed.stderr
    assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in printed), repr(printed)
