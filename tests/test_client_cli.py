"""service/client.py and service/cli.py against the real stack (gunicorn, worker.py, Redis,
the fake Anthropic server), plus unit tests of the SSE parser, the wait schedule, the error
mapping and webhook verification."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import standardwebhooks

from service.client import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConflictError,
    Event,
    JobsClient,
    NotFoundError,
    ServerError,
    ServiceUnavailableError,
    SSEParser,
    ValidationError,
    WaitTimeout,
    WebhookVerificationError,
    error_from_response,
    verify_webhook,
)
from tests.conftest import ALICE_KEY, BOB_KEY, PYTHON, ROOT, free_port, wait_for

FAST_RETRIES = {"RETRY_BASE_S": "0.2", "RETRY_MAX_S": "1", "LLM_MAX_ATTEMPTS": "3"}


def fake(**fields: object) -> str:
    return "[[fake: " + " ".join(f"{k}={v}" for k, v in fields.items()) + "]]"


def run_cli(*args: str, url: str | None = None, key: str | None = ALICE_KEY, timeout: float = 30):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMJOBS_")}
    if url is not None:
        env["LLMJOBS_URL"] = url
    if key is not None:
        env["LLMJOBS_API_KEY"] = key
    return subprocess.run(
        [PYTHON, "-m", "service.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


# --------------------------------------------------------------------------- unit: SSE parser


def feed_all(chunks: list[bytes]) -> list[Event]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


STREAM = (
    b": keep-alive\r\n"
    b"id: 1-0\r\n"
    b"event: progress\r\n"
    b'data: {"text": "h\xc3\xa9llo", "output_tokens": 1, "attempt": 1}\r\n'
    b"\r\n"
    b"id: 2-0\n"
    b"event: progress\n"
    b'data: {"text":\n'
    b'data:  " world",\n'
    b'data: "attempt": 1}\n'
    b": a comment between fields\n"
    b"\n"
    b"id: 3-0\r"
    b"event: succeeded\r"
    b'data: {"id": "j1", "status": "succeeded"}\r'
    b"\r"
    b"id: 4-0\n"
    b"event: progress\n"
    b'data: {"text": "cut off"}\n'
)
EXPECTED = [
    Event("1-0", "progress", {"text": "héllo", "output_tokens": 1, "attempt": 1}),
    Event("2-0", "progress", {"text": " world", "attempt": 1}),
    Event("3-0", "succeeded", {"id": "j1", "status": "succeeded"}),
]


def test_sse_parser_multiline_data_comments_and_line_endings():
    # The last event has no blank line after it: per WHATWG it is never dispatched.
    assert feed_all([STREAM]) == EXPECTED


def test_sse_parser_any_chunk_boundary():
    # One byte at a time: splits inside CRLF, inside a UTF-8 character, inside "data:".
    assert feed_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED
    for cut in range(1, len(STREAM)):
        assert feed_all([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_sse_parser_field_rules():
    events = feed_all(
        [
            b"\xef\xbb\xbfdata:no space\n\n",  # BOM dropped; no space to strip
            b"data:  two spaces\n\n",  # only one space is removed
            b"data\n\n",  # a field name alone: empty value
            b"id: 7\n\n",  # no data: not dispatched, but the id is kept
            b"event: x\ndata: 1\n\n",  # JSON; the id carries over
            b"id: a\x00b\ndata: [1, 2]\n\n",  # an id with NUL is ignored
            b'retry: 2500\nunknown: field\ndata: {"a": 1}\n\n',
        ]
    )
    assert events == [
        Event(None, "message", "no space"),
        Event(None, "message", " two spaces"),
        Event(None, "message", ""),
        Event("7", "x", 1),
        Event("7", "message", [1, 2]),
        Event("7", "message", {"a": 1}),
    ]


def test_sse_parser_retry_field():
    parser = SSEParser()
    parser.feed(b"retry: 2500\n\nretry: soon\n\n")
    assert parser.retry_ms == 2500


# --------------------------------------------------------------------------- unit: errors and webhooks


def response(status: int, body: bytes, **headers: str) -> requests.Response:
    r = requests.Response()
    r.status_code, r._content, r.reason = status, body, "Reason"
    r.headers.update(headers)
    return r


def test_error_mapping_without_a_json_body():
    error = error_from_response(response(502, b"<html>Bad Gateway</html>", **{"Content-Type": "text/html"}))
    assert type(error) is ServerError and error.status_code == 502 and error.code == 502
    assert error.message == "<html>Bad Gateway</html>"

    body = json.dumps({"code": 503, "status": "Service Unavailable", "message": "the job store is down"}).encode()
    error = error_from_response(response(503, body, **{"Retry-After": "5"}))
    assert isinstance(error, ServiceUnavailableError) and isinstance(error, ServerError)
    assert (error.message, error.retry_after, error.errors) == ("the job store is down", 5.0, None)

    error = error_from_response(response(413, b""))
    assert error.message == "Reason" and error.status_code == 413

    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 < error_from_response(response(429, b"{}", **{"Retry-After": later})).retry_after <= 30


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def signed(body: str, when: datetime | None = None, secret: str = SECRET) -> dict[str, str]:
    when = when or datetime.now(UTC)
    msg_id = f"msg_{uuid.uuid4().hex}"
    signature = standardwebhooks.Webhook(secret).sign(msg_id, when, body)
    return {"Webhook-Id": msg_id, "Webhook-Timestamp": str(int(when.timestamp())), "Webhook-Signature": signature}


def test_verify_webhook():
    job = {"id": "j1", "status": "succeeded", "result": {"text": "hé"}}
    body = json.dumps(job)
    headers = signed(body)
    assert verify_webhook(body.encode(), headers, SECRET) == job
    assert verify_webhook(body, requests.structures.CaseInsensitiveDict(headers), SECRET) == job

    rejected = [
        (body.replace("succeeded", "failed"), headers),  # tampered body
        (body, signed(body, datetime.now(UTC) - timedelta(minutes=10))),  # replayed: too old
        (body, signed(body, secret="whsec_" + "QUJDREVGR0hJSktMTU5PUA==")),  # another secret
        (body, {**headers, "Webhook-Signature": "garbage"}),  # malformed
        (body, {k: v for k, v in headers.items() if k != "Webhook-Id"}),  # missing header
    ]
    for data, hdrs in rejected:
        with pytest.raises(WebhookVerificationError) as info:
            verify_webhook(data, hdrs, SECRET)
        assert isinstance(info.value, standardwebhooks.WebhookVerificationError)


# --------------------------------------------------------------------------- unit-ish: CLI without a stack


def test_cli_needs_a_key_and_a_reachable_url():
    missing = run_cli("get", "some-id", url="http://127.0.0.1:1", key=None)
    assert missing.returncode == 2
    assert "LLMJOBS_API_KEY" in missing.stderr and "Traceback" not in missing.stderr

    down = run_cli("get", "some-id", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2
    assert down.stderr.startswith("error:") and "Traceback" not in down.stderr


def test_stream_gives_up_after_its_reconnects():
    pauses: list[float] = []
    client = JobsClient(f"http://127.0.0.1:{free_port()}", ALICE_KEY, sleep=pauses.append)
    with pytest.raises(APIConnectionError, match="gave up after 5 reconnects"):
        list(client.stream("some-job"))
    assert pauses == [0.5] * 5


# --------------------------------------------------------------------------- the real stack


def test_wait_backoff_schedule_then_submit_wait_get_list_and_typed_errors(start_api, start_worker):
    api = start_api()
    # No worker yet: the job stays queued, and wait() runs out on a fake clock.
    now = [0.0]
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        now[0] += seconds

    client = JobsClient(api, ALICE_KEY, sleep=sleep, clock=lambda: now[0])
    queued = client.submit("still queued " + fake(tokens=3))
    with pytest.raises(WaitTimeout) as info:
        client.wait(queued["id"], timeout=20)
    assert delays == [1, 1.5, 2.25, 3.375, 5, 5, 1.875]
    assert info.value.job["id"] == queued["id"] and info.value.job["status"] == "queued"

    start_worker()
    client = JobsClient(api, ALICE_KEY)
    key = uuid.uuid4().hex
    job = client.submit(
        "Tell me about queues " + fake(tokens=12), priority="high", metadata={"ticket": "T-1"}, idempotency_key=key
    )
    assert job["status"] == "queued" and job["priority"] == "high"
    done = client.wait(job["id"], timeout=30)
    assert done["status"] == "succeeded", done
    assert done["result"]["usage"]["output_tokens"] == 12 and done["result"]["usage"]["input_tokens"] > 0
    assert done["result"]["cost_usd"] > 0 and done["metadata"] == {"ticket": "T-1"}
    assert client.get(job["id"]) == done
    assert client.wait(queued["id"], timeout=30)["status"] == "succeeded"

    # Idempotency: the same request returns the job; another body under the key is a 409.
    again = client.submit(
        "Tell me about queues " + fake(tokens=12), priority="high", metadata={"ticket": "T-1"}, idempotency_key=key
    )
    assert again["id"] == job["id"]
    with pytest.raises(ConflictError):
        client.submit("something else", idempotency_key=key)

    page = client.list(limit=1)
    assert [j["id"] for j in page["data"]] == [job["id"]] and page["next_cursor"]
    rest = client.list(limit=5, cursor=page["next_cursor"])
    assert [j["id"] for j in rest["data"]] == [queued["id"]] and rest["next_cursor"] is None
    assert {j["id"] for j in client.list(status="succeeded")["data"]} == {job["id"], queued["id"]}
    assert client.list(status="running")["data"] == []

    # Typed errors.
    with pytest.raises(AuthenticationError) as auth:
        JobsClient(api, "not-a-valid-key-at-all").get(job["id"])
    assert auth.value.status_code == 401 and auth.value.message
    with pytest.raises(NotFoundError) as missing:
        client.get("no-such-job")
    assert missing.value.status_code == 404 and missing.value.code == 404
    with pytest.raises(NotFoundError):
        JobsClient(api, BOB_KEY).get(job["id"])  # another client's job
    with pytest.raises(ValidationError) as invalid:
        client.submit("hi", max_tokens=0)
    assert invalid.value.status_code == 422 and "max_tokens" in json.dumps(invalid.value.errors)
    with pytest.raises(ConflictError) as finished:
        client.cancel(job["id"])
    assert finished.value.status_code == 409 and isinstance(finished.value, APIError)
    with pytest.raises(ConflictError):
        client.retry(job["id"])
    with pytest.raises(APIConnectionError):
        JobsClient(f"http://127.0.0.1:{free_port()}", ALICE_KEY).get(job["id"])


def test_get_polls_with_the_etag_and_an_unchanged_job_costs_no_body(start_api):
    api = start_api()  # no worker: the job stays queued, unchanged
    answers: list[int] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *args, **kwargs: answers.append(response.status_code))
    client = JobsClient(api, ALICE_KEY, session=session)
    job = client.submit("hello")

    first, second, third = (client.get(job["id"]) for _ in range(3))

    assert answers == [202, 200, 304, 304]
    assert first == second == third and first["id"] == job["id"]
    second["status"] = "changed by the caller"  # each answer is the caller's own copy
    assert client.get(job["id"])["status"] == "queued"


def test_cancel_a_running_job_and_retry_it(start_api, start_worker):
    api = start_api(**FAST_RETRIES)
    start_worker(**FAST_RETRIES)
    client = JobsClient(api, ALICE_KEY)
    job = client.submit("long " + fake(tokens=400, chunk_delay_ms=50))
    wait_for(lambda: client.get(job["id"])["progress"]["output_tokens"] > 2, what="streaming to start")
    assert client.cancel(job["id"])["status"] == "running"  # 202: it stops within a second
    done = client.wait(job["id"], timeout=10)
    assert done["status"] == "canceled" and done["progress"]["text"]
    # The answer shows the job as it is after the re-queue: an idle worker may have taken it already.
    assert client.retry(job["id"])["status"] in {"queued", "running"}
    assert client.cancel(job["id"])["status"] in {"canceled", "running"}
    assert client.wait(job["id"], timeout=10)["status"] == "canceled"


def test_cli_submit_wait_get_and_errors(start_api, start_worker):
    api = start_api()
    start_worker()

    ok = run_cli(
        "submit", "hello " + fake(tokens=5), "--priority", "high", "--metadata", "a=1", "b=2", "--wait", url=api
    )
    assert ok.returncode == 0, ok.stderr
    job = json.loads(ok.stdout)
    assert job["status"] == "succeeded" and job["result"]["usage"]["output_tokens"] == 5
    assert job["metadata"] == {"a": "1", "b": "2"} and job["priority"] == "high"

    got = run_cli("get", job["id"], url=api)
    assert got.returncode == 0 and json.loads(got.stdout)["id"] == job["id"]

    queued = run_cli("submit", "no wait " + fake(tokens=2), url=api)
    assert queued.returncode == 0 and json.loads(queued.stdout)["status"] == "queued"

    failed = run_cli("submit", "bad " + fake(error=400), "--wait", url=api)
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


# --------------------------------------------------------------------------- SSE (GET /v1/jobs/{id}/events)


def test_stream_progress_then_one_terminal_event_resume_and_reconnect(start_api, start_worker, processes):
    api = start_api()
    start_worker()
    client = JobsClient(api, ALICE_KEY)
    job = client.submit("stream me " + fake(tokens=30, chunk_delay_ms=20))

    events = list(client.stream(job["id"]))
    kinds = [e.event for e in events]
    assert kinds[-1] == "succeeded" and kinds[:-1] == ["progress"] * (len(events) - 1), kinds
    assert len(events) >= 5
    final = events[-1].data
    assert final["id"] == job["id"] and final["status"] == "succeeded"
    assert "".join(e.data["text"] for e in events[:-1]) == final["result"]["text"]
    assert {e.data["attempt"] for e in events[:-1]} == {1}
    assert events[-2].data["output_tokens"] <= 30
    assert len({e.id for e in events}) == len(events)

    # Resuming after the 3rd event gives exactly the ones after it; after the end, all again.
    assert list(client.stream(job["id"], last_event_id=events[2].id)) == events[3:]
    assert list(client.stream(job["id"])) == events

    with pytest.raises(NotFoundError):
        list(JobsClient(api, BOB_KEY).stream(job["id"]))

    # The connection drops mid-stream (every gunicorn worker killed; the master starts new
    # ones): the client resumes from the last event, with no gap and no repeat.
    api_process = next(p for name, p, _ in processes.started if name == "api")
    session = RecordingSession()
    job = client.submit("interrupted " + fake(tokens=60, chunk_delay_ms=25))
    events, killed = [], []
    for event in JobsClient(api, ALICE_KEY, session=session).stream(job["id"]):
        events.append(event)
        if len(events) == 3:
            killed = children_of(api_process.pid)
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
    final = events[-1].data
    assert [e.event for e in events].count("succeeded") == 1 and events[-1].event == "succeeded"
    assert "".join(e.data["text"] for e in events[:-1]) == final["result"]["text"]
    assert len({e.id for e in events}) == len(events)
    assert killed and not set(killed) & set(children_of(api_process.pid))
    assert len(session.sent) >= 2  # it did reconnect
    assert session.sent[0].get("Last-Event-ID") is None and session.sent[1]["Last-Event-ID"] in [
        e.id for e in events[2:]
    ]
    assert events[-1].data["status"] == "succeeded" and len(events) > 10


class RecordingSession(requests.Session):
    """A real session that remembers the headers of every request it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, str]] = []

    def request(self, method, url, *args, headers=None, **kwargs):
        self.sent.append(dict(headers or {}))
        return super().request(method, url, *args, headers=headers, **kwargs)


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return children


def test_stream_shows_a_retry_and_tail_prints_the_text(start_api, start_worker):
    api = start_api(**FAST_RETRIES)
    start_worker(**FAST_RETRIES)
    client = JobsClient(api, ALICE_KEY)
    flaky = fake(fail_times=1, key=uuid.uuid4().hex, mid_stream_error="overloaded_error", after=3, tokens=10)
    job = client.submit("flaky " + flaky)

    events = list(client.stream(job["id"]))
    final = events[-1].data
    assert events[-1].event == "succeeded" and final["attempts"] == 2
    attempts = [e.data["attempt"] for e in events[:-1]]
    assert attempts == sorted(attempts) and attempts[0] == 1 and attempts[-1] == 2
    second = "".join(e.data["text"] for e in events[:-1] if e.data["attempt"] == 2)
    assert second == final["result"]["text"]

    # tail, while a job streams: its text on stdout, "[attempt 2]" and a summary on stderr.
    tailed = run_cli("tail", job["id"], url=api)
    assert tailed.returncode == 0, tailed.stderr
    assert "[attempt 2]" in tailed.stderr and "succeeded" in tailed.stderr.splitlines()[-1]
    assert tailed.stdout.rstrip("\n").endswith(final["result"]["text"])

    live = client.submit("live " + fake(tokens=30, chunk_delay_ms=20))
    tailed = run_cli("tail", live["id"], url=api)
    assert tailed.returncode == 0, tailed.stderr
    done = client.get(live["id"])
    assert tailed.stdout == done["result"]["text"] + "\n"
    summary = tailed.stderr.strip().splitlines()[-1]
    assert summary.startswith("succeeded") and "30 output tokens" in summary and "$" in summary

    failing = client.submit("bad " + fake(error=400))
    tailed = run_cli("tail", failing["id"], url=api)
    assert tailed.returncode == 1 and tailed.stderr.strip().splitlines()[-1].startswith("failed")


# --------------------------------------------------------------------------- tail and the terminal

# Model text is whatever the model wrote: colours, a screen clear, a window title, a
# clipboard write (OSC 52), a carriage return that overwrites the line, an 8-bit CSI.
HOSTILE_CHUNKS = ["Hello \x1b[31mred\x1b[0m", " \x1b]0;owned\x07ti\x1b[2Jtle", "\x1b]52;c;ZXZpbA==\x07 e\x9b1Knd\r\n"]


def serve_events(events: list[tuple[str, dict]]) -> ThreadingHTTPServer:
    """A stand-in API that answers any GET with these server-sent events: what `tail` reads."""
    body = "".join(
        f"id: {n}-0\nevent: {name}\ndata: {json.dumps(data)}\n\n" for n, (name, data) in enumerate(events, 1)
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_tail_strips_terminal_control_sequences_from_model_text():
    job = {"id": "j1", "status": "failed", "attempts": 1, "progress": {"output_tokens": 9}, "result": None,
           "error": {"type": "api_error\x1b[2J", "message": "echoed \x1b]0;title\x07text"}}  # fmt: skip
    progress = [("progress", {"text": chunk, "attempt": 1, "output_tokens": 3}) for chunk in HOSTILE_CHUNKS]
    server = serve_events([*progress, ("failed", job)])
    try:
        tailed = run_cli("tail", "j1", url=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()

    assert tailed.returncode == 1, tailed.stderr
    assert tailed.stdout == "Hello red title end\n", repr(tailed.stdout)
    assert tailed.stderr.strip().splitlines()[-1] == "failed: 9 output tokens, cost unknown, api_error: echoed text"
    printed = tailed.stdout + tailed.stderr
    assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in printed), repr(printed)
