"""Tests for the fake Anthropic API, driven through the real anthropic SDK."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from fake_anthropic.models import MODELS, is_known_model
from fake_anthropic.ratelimits import DEFAULT_REQUESTS_PER_MINUTE, DEFAULT_TOKENS_PER_MINUTE
from service.config import Settings
from service.llm.pricing import PRICES_USD_PER_MTOK
from tests.support.fake_server import fake_in_thread
from tests.support.network import free_port
from tests.support.paths import PYTHON, ROOT
from tests.support.waiting import wait_for

MODEL = "claude-haiku-4-5"
WORDS_16 = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with fake_in_thread(chunk_delay_s=0) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test-key", base_url=base_url, max_retries=0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def raw(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, bytes]:
    """Plain HTTP request, for things the SDK will not send (e.g. no auth)."""
    data = body if isinstance(body, bytes) else None
    if body is not None and data is None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(
        base_url + path,
        data=data,
        method=method,
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def logged_requests(base_url: str) -> list[dict[str, Any]]:
    status, _, payload = raw(base_url, "GET", "/_fake/requests")
    assert status == 200
    return json.loads(payload)


# --- happy path -----------------------------------------------------------------


def test_stream_text_equals_create_text(client: anthropic.Anthropic) -> None:
    kwargs = {"model": MODEL, "max_tokens": 100, "messages": user("Say hi")}
    message = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        chunks = list(stream.text_stream)
        final = stream.get_final_message()

    assert message.content[0].text == WORDS_16
    assert len(chunks) == 16
    assert "".join(chunks) == message.content[0].text
    assert final.content[0].text == message.content[0].text
    assert message.stop_reason == final.stop_reason == "end_turn"
    assert message.model == final.model == MODEL
    assert message.id.startswith("msg_") and final.id.startswith("msg_")
    assert message.usage.output_tokens == final.usage.output_tokens == 16
    assert message.usage.input_tokens == final.usage.input_tokens == 1


def test_stream_is_flushed_per_event(client: anthropic.Anthropic) -> None:
    # 5 deltas 150 ms apart: if the server buffered, all would arrive together.
    arrivals = []
    with client.messages.stream(
        model=MODEL,
        max_tokens=100,
        messages=user("[[fake: tokens=5 chunk_delay_ms=150]]"),
    ) as stream:
        for _ in stream.text_stream:
            arrivals.append(time.monotonic())
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] >= 0.45


def test_sse_wire_format(base_url: str) -> None:
    status, headers, payload = raw(
        base_url,
        "POST",
        "/v1/messages",
        {"model": MODEL, "max_tokens": 10, "stream": True, "messages": user("[[fake: tokens=3]]")},
        {"x-api-key": "k"},
    )
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["request-id"].startswith("req_")
    frames = payload.decode().split("\n\n")
    assert frames[-1] == ""
    events = []
    for frame in frames[:-1]:
        event_line, data_line = frame.split("\n")
        name = event_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append((name, data))
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    assert events[3][1]["delta"] == {"type": "text_delta", "text": "lorem "}
    assert events[7][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[7][1]["usage"]["output_tokens"] == 3  # cumulative, with the input counts as the real API sends


def test_usage_counts_system_and_all_messages(client: anthropic.Anthropic) -> None:
    last = "[[fake: tokens=7]]"
    message = client.messages.create(
        model=MODEL,
        max_tokens=100,
        system=[{"type": "text", "text": "s" * 40}],
        messages=[
            {"role": "user", "content": "u" * 100},
            {"role": "assistant", "content": [{"type": "text", "text": "a" * 20}]},
            {"role": "user", "content": [{"type": "text", "text": last}]},
        ],
    )
    assert message.usage.input_tokens == (40 + 100 + 20 + len(last)) // 4
    assert message.usage.output_tokens == 7
    assert message.content[0].text == "lorem ipsum dolor sit amet consectetur adipiscing "
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize("streaming", [False, True])
def test_max_tokens_caps_output(client: anthropic.Anthropic, streaming: bool) -> None:
    kwargs = {"model": MODEL, "max_tokens": 5, "messages": user("[[fake: tokens=50]]")}
    if streaming:
        with client.messages.stream(**kwargs) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert message.content[0].text == "lorem ipsum dolor sit amet "


def test_directive_only_read_from_last_user_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[
            {"role": "user", "content": "[[fake: error=500]]"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "plain, comma pairs: [[fake: tokens=2, chunk_delay_ms=0]]"},
        ],
    )
    assert message.content[0].text == "lorem ipsum "


def test_temperature_and_headers_reach_request_log(client: anthropic.Anthropic, base_url: str) -> None:
    assert raw(base_url, "DELETE", "/_fake/requests")[0] == 200
    assert logged_requests(base_url) == []
    client.messages.create(model=MODEL, max_tokens=10, messages=user("hi"), extra_body={"temperature": 0.3})
    (entry,) = logged_requests(base_url)
    assert entry["body"]["temperature"] == 0.3
    assert entry["body"]["model"] == MODEL
    assert "anthropic-version" in entry["headers"]
    assert "authorization" in entry["headers"]


def test_healthz_and_request_id(client: anthropic.Anthropic, base_url: str) -> None:
    status, headers, payload = raw(base_url, "GET", "/healthz")
    assert (status, json.loads(payload)) == (200, {"ok": True})
    assert headers["request-id"].startswith("req_")
    response = client.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=user("hi"))
    assert response.headers["request-id"].startswith("req_")


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (413, anthropic.ContentTooLargeError, "request_too_large"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
def test_error_status_maps_to_sdk_exception(
    client: anthropic.Anthropic,
    status: int,
    exc_class: type[anthropic.APIStatusError],
    error_type: str,
    streaming: bool,
) -> None:
    kwargs = {"model": MODEL, "max_tokens": 10, "messages": user(f"[[fake: error={status}]]")}
    with pytest.raises(anthropic.APIStatusError) as info:
        if streaming:
            with client.messages.stream(**kwargs) as stream:
                stream.get_final_message()
        else:
            client.messages.create(**kwargs)
    assert type(info.value) is exc_class
    assert info.value.status_code == status
    assert info.value.type == error_type
    assert info.value.request_id and info.value.request_id.startswith("req_")


def test_rate_limit_headers(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=user("[[fake: error=429 retry_after=7]]"))
    headers = info.value.response.headers
    assert headers["retry-after"] == "7"
    assert headers["anthropic-ratelimit-requests-limit"] == str(DEFAULT_REQUESTS_PER_MINUTE)
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert info.value.api_message == ("Number of request tokens has exceeded your per-minute rate limit")


def test_spend_limit_is_not_retried(base_url: str) -> None:
    # Even a retrying client must stop: the reply says x-should-retry: false.
    retrying = anthropic.Anthropic(api_key="k", base_url=base_url, max_retries=2)
    raw(base_url, "DELETE", "/_fake/requests")
    with pytest.raises(anthropic.RateLimitError) as info:
        retrying.messages.create(model=MODEL, max_tokens=10, messages=user("[[fake: error=429 spend_limit=1]]"))
    assert info.value.api_message == "This request would exceed your organization's spend limit."
    assert info.value.error_code == "enforced_spend_limit_reached"
    assert isinstance(info.value, anthropic.EnforcedSpendLimitReachedError)
    assert len(logged_requests(base_url)) == 1


def test_mid_stream_error(client: anthropic.Anthropic) -> None:
    chunks = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(
            model=MODEL,
            max_tokens=100,
            messages=user("[[fake: mid_stream_error=overloaded_error after=3]]"),
        ) as stream,
    ):
        for text in stream.text_stream:
            chunks.append(text)
    # The SDK raises the base class: the HTTP status of the stream was 200.
    assert type(info.value) is anthropic.APIStatusError
    assert info.value.status_code == 200
    assert info.value.type == "overloaded_error"
    assert info.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert chunks == ["lorem ", "ipsum ", "dolor "]


def test_mid_stream_error_without_stream_is_529(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model=MODEL, max_tokens=10, messages=user("[[fake: mid_stream_error=overloaded_error]]"))


def test_fail_times_then_success(client: anthropic.Anthropic) -> None:
    key = f"k1-{uuid.uuid4().hex}"  # module-scoped server: keep counters apart
    kwargs = {"model": MODEL, "max_tokens": 100, "messages": user(f"[[fake: fail_times=2 key={key}]]")}
    for _ in range(2):
        with pytest.raises(anthropic.OverloadedError):
            client.messages.create(**kwargs)
    assert client.messages.create(**kwargs).stop_reason == "end_turn"
    assert client.messages.create(**kwargs).stop_reason == "end_turn"


def test_fail_times_uses_given_error(client: anthropic.Anthropic) -> None:
    key = uuid.uuid4().hex
    text = f"[[fake: fail_times=1 key={key} error=500 tokens=3]]"
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(model=MODEL, max_tokens=10, messages=user(text))
    message = client.messages.create(model=MODEL, max_tokens=10, messages=user(text))
    assert message.content[0].text == "lorem ipsum dolor "


# --- hangs ----------------------------------------------------------------------


def _request_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "process_request_thread" in t.name]


def _assert_server_threads_finish(timeout: float = 3.0) -> None:
    """The hanging handler must notice the client left instead of sleeping 600 s."""
    deadline = time.monotonic() + timeout
    while _request_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _request_threads() == []


def test_hang_non_streaming_times_out(base_url: str) -> None:
    client = anthropic.Anthropic(api_key="k", base_url=base_url, max_retries=0, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(model=MODEL, max_tokens=10, messages=user("[[fake: hang=1]]"))
    assert time.monotonic() - started < 3
    _assert_server_threads_finish()


def test_hang_streaming_after_deltas(base_url: str) -> None:
    client = anthropic.Anthropic(api_key="k", base_url=base_url, max_retries=0, timeout=1.0)
    chunks = []
    started = time.monotonic()
    # The 200 headers already arrived, so anthropic 2.11 does not wrap the body
    # read timeout: the raw httpx2.ReadTimeout escapes from the stream iterator.
    with (
        pytest.raises(httpx2.ReadTimeout),
        client.messages.stream(model=MODEL, max_tokens=10, messages=user("[[fake: hang=1 after=2]]")) as stream,
    ):
        for text in stream.text_stream:
            chunks.append(text)
    assert time.monotonic() - started < 3
    assert chunks == ["lorem ", "ipsum "]
    _assert_server_threads_finish()


def test_hang_streaming_before_message_start(base_url: str) -> None:
    client = anthropic.Anthropic(api_key="k", base_url=base_url, max_retries=0, timeout=1.0)
    started = time.monotonic()
    with (
        pytest.raises(httpx2.ReadTimeout),
        client.messages.stream(model=MODEL, max_tokens=10, messages=user("[[fake: hang=1]]")) as stream,
    ):
        # Headers came back, so the stream opened; only the body hangs.
        assert stream.response.status_code == 200
        stream.get_final_message()
    assert time.monotonic() - started < 3
    _assert_server_threads_finish()


# --- request validation ---------------------------------------------------------


def test_missing_auth_is_401(base_url: str) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": user("hi")}
    status, _, payload = raw(base_url, "POST", "/v1/messages", body)
    assert status == 401
    assert json.loads(payload)["error"]["type"] == "authentication_error"
    status, _, _ = raw(base_url, "POST", "/v1/messages", body, {"authorization": "Bearer "})
    assert status == 401
    # Both header styles authenticate.
    assert raw(base_url, "POST", "/v1/messages", body, {"x-api-key": "k"})[0] == 200
    assert raw(base_url, "POST", "/v1/messages", body, {"authorization": "Bearer k"})[0] == 200


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"model": ""}, "model"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "user", "content": [{"type": "image"}]}]}, "messages.0.content.0"),
        ({"system": 5}, "system"),
    ],
)
def test_invalid_body_is_400(client: anthropic.Anthropic, overrides: dict[str, Any], fragment: str) -> None:
    kwargs = {"model": MODEL, "max_tokens": 10, "messages": user("hi"), **overrides}
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(**kwargs)
    assert info.value.type == "invalid_request_error"
    assert fragment in (info.value.api_message or "")


@pytest.mark.parametrize("extra", [{"temperature": 1.5}, {"stream": "yes"}])
def test_invalid_optional_fields_are_400(client: anthropic.Anthropic, extra: dict[str, Any]) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=user("hi"), extra_body=extra)
    assert next(iter(extra)) in (info.value.api_message or "")


def test_non_json_body_is_400(base_url: str) -> None:
    status, _, payload = raw(base_url, "POST", "/v1/messages", b"{nope", {"x-api-key": "k"})
    assert status == 400
    assert json.loads(payload)["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("directive", "fragment"),
    [
        ("[[fake: tokenz=3]]", "unknown key 'tokenz'"),
        ("[[fake: tokens=many]]", "tokens must be an integer"),
        ("[[fake: tokens]]", "expected key=value"),
        ("[[fake: error=418]]", "error must be one of"),
        ("[[fake: fail_times=2]]", "fail_times needs key"),
        ("[[fake: mid_stream_error=oops]]", "mid_stream_error must be one of"),
    ],
)
def test_bad_directive_is_400(client: anthropic.Anthropic, directive: str, fragment: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=user(directive))
    assert fragment in (info.value.api_message or "")


def test_an_unknown_model_is_404_not_found_as_the_real_api_says(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="claude-sonet-5-5", max_tokens=10, messages=user("hi"))  # a typo
    assert info.value.status_code == 404 and info.value.type == "not_found_error"
    assert info.value.body["error"]["message"] == "model: claude-sonet-5-5"
    snapshot = client.messages.create(model="claude-haiku-4-5-20251001", max_tokens=10, messages=user("hi"))
    assert snapshot.model == "claude-haiku-4-5-20251001"


def test_the_models_the_service_knows_are_the_ones_the_fake_accepts() -> None:
    # One list of current models on each side (the fake imports nothing of the service).
    assert set(PRICES_USD_PER_MTOK) == MODELS
    assert is_known_model(Settings.default_model)


def test_unknown_route_uses_error_shape(base_url: str) -> None:
    status, _, payload = raw(base_url, "GET", "/v1/nope")
    assert status == 404
    assert json.loads(payload)["error"]["type"] == "not_found_error"


# --- rate limits and storms, against `python -m fake_anthropic` as a process -----------

RATE_LIMIT_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")


def start_fake(log: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "fake_anthropic", "--port", str(port), "--chunk-delay-ms", "0", *args],
        cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return raw(url, "GET", "/healthz")[0] == 200
        except OSError:  # not listening yet
            return False

    wait_for(answers, what="the fake Anthropic process")
    return process, url


@pytest.fixture(scope="module")
def fake_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_fake(tmp_path_factory.mktemp("fake") / "fake.log")
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def fake_url(fake_process: str) -> Iterator[str]:
    """The process's URL; its storm and budget go back to the defaults after the test."""
    yield fake_process
    assert raw(fake_process, "POST", "/_fake/storm", {"seconds": 0})[0] == 200
    defaults = {"requests_per_minute": DEFAULT_REQUESTS_PER_MINUTE, "tokens_per_minute": DEFAULT_TOKENS_PER_MINUTE}
    assert raw(fake_process, "POST", "/_fake/limits", {**defaults, "window_seconds": 60})[0] == 200


def admin(url: str, path: str, body: dict[str, int] | None = None) -> dict[str, Any]:
    status, _, payload = raw(url, "POST" if body is not None else "GET", path, body)
    assert status == 200, payload
    return json.loads(payload)


def epoch(rfc3339: str) -> float:
    assert rfc3339.endswith("Z")
    return datetime.fromisoformat(rfc3339).timestamp()


def call(url: str, streaming: bool, asynchronous: bool, text: str = "hi") -> httpx2.Response:
    """One messages call through the real SDK (no retries); the HTTP response it got."""
    kwargs = {"model": MODEL, "max_tokens": 100, "messages": user(text)}
    if not asynchronous:
        client = anthropic.Anthropic(api_key="k", base_url=url, max_retries=0)
        if not streaming:
            return client.messages.with_raw_response.create(**kwargs).http_response
        with client.messages.stream(**kwargs) as stream:
            stream.get_final_message()
            return stream.response

    async def run() -> httpx2.Response:
        async with anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0) as client:
            if not streaming:
                return (await client.messages.with_raw_response.create(**kwargs)).http_response
            async with client.messages.stream(**kwargs) as stream:
                await stream.get_final_message()
                return stream.response

    return asyncio.run(run())


BOTH_CLIENTS = pytest.mark.parametrize(
    ("streaming", "asynchronous"), [(False, False), (True, False), (False, True), (True, True)]
)


@BOTH_CLIENTS
def test_storm_refuses_every_call_until_ended(fake_url: str, streaming: bool, asynchronous: bool) -> None:
    admin(fake_url, "/_fake/storm", {"seconds": 600, "retry_after": 2})
    for _ in range(3):
        with pytest.raises(anthropic.RateLimitError) as info:
            call(fake_url, streaming, asynchronous)
        headers = info.value.response.headers
        assert headers["retry-after"] == "2"
        assert info.value.request_id and info.value.request_id.startswith("req_")
        assert info.value.body["type"] == "error" and info.value.type == "rate_limit_error"
        for kind in RATE_LIMIT_KINDS:
            assert headers[f"anthropic-ratelimit-{kind}-remaining"] == "0"
    storm = admin(fake_url, "/_fake/storm")
    assert storm["active"] and (storm["status"], storm["retry_after"]) == (429, 2)
    assert storm["requests"] == 3 == sum(storm["per_second"])

    ended = admin(fake_url, "/_fake/storm", {"seconds": 0})
    assert call(fake_url, streaming, asynchronous).status_code == 200
    assert not ended["active"] and ended["requests"] == 3 == sum(ended["per_second"])
    assert admin(fake_url, "/_fake/storm") == ended  # calls after the storm are not counted


def test_storm_ends_by_itself(fake_url: str) -> None:
    admin(fake_url, "/_fake/storm", {"seconds": 1})
    wait_for(lambda: _succeeds(fake_url), what="a call after the storm")
    storm = admin(fake_url, "/_fake/storm")
    assert time.time() >= storm["ends"] and not storm["active"]


def _succeeds(url: str) -> bool:
    try:
        return call(url, streaming=False, asynchronous=False).status_code == 200
    except anthropic.RateLimitError:
        return False


@pytest.mark.stack
def test_cli_starts_in_an_overloaded_storm(tmp_path: Path) -> None:
    process, url = start_fake(
        tmp_path / "fake.log", "--storm-seconds", "600", "--storm-status", "529", "--requests-per-minute", "7"
    )
    try:
        with pytest.raises(anthropic.OverloadedError) as info:
            call(url, streaming=True, asynchronous=False)
        headers = info.value.response.headers
        assert info.value.type == "overloaded_error"
        assert "retry-after" not in headers  # overload is not this key's limit
        assert headers["anthropic-ratelimit-requests-limit"] == "7"
        assert admin(url, "/_fake/storm")["requests"] == 1
        admin(url, "/_fake/storm", {"seconds": 0})
        assert call(url, streaming=False, asynchronous=False).headers["anthropic-ratelimit-requests-remaining"] == "6"
    finally:
        process.terminate()
        process.wait(timeout=10)


@BOTH_CLIENTS
def test_rate_limit_headers_on_every_answer(fake_url: str, streaming: bool, asynchronous: bool) -> None:
    admin(fake_url, "/_fake/limits", {"requests_per_minute": 10, "tokens_per_minute": 1000})
    before = time.time()
    first = call(fake_url, streaming, asynchronous, "[[fake: tokens=7]]").headers
    second = call(fake_url, streaming, asynchronous, "[[fake: tokens=7]]").headers
    input_tokens = len("[[fake: tokens=7]]") // 4
    assert first["anthropic-ratelimit-requests-limit"] == "10"
    assert first["anthropic-ratelimit-requests-remaining"] == "9"
    assert second["anthropic-ratelimit-requests-remaining"] == "8"
    assert second["anthropic-ratelimit-input-tokens-remaining"] == str(1000 - 2 * input_tokens)
    assert second["anthropic-ratelimit-output-tokens-remaining"] == str(1000 - 2 * 7)
    assert second["anthropic-ratelimit-tokens-remaining"] == str(1000 - 2 * 7)  # the tighter of the two
    for kind in RATE_LIMIT_KINDS:
        assert epoch(second[f"anthropic-ratelimit-{kind}-reset"]) > before
    assert second["anthropic-ratelimit-tokens-limit"] == "1000"


@pytest.mark.parametrize(
    ("limits", "text", "spent"),
    [
        ({"requests_per_minute": 2}, "hi", "requests"),
        ({"tokens_per_minute": 10}, "[[fake: tokens=5]]", "output-tokens"),
    ],
)
def test_spent_budget_is_429_until_the_reset(fake_url: str, limits: dict[str, int], text: str, spent: str) -> None:
    admin(fake_url, "/_fake/limits", limits)
    for _ in range(2):
        call(fake_url, streaming=False, asynchronous=False, text=text)
    before = time.time()
    with pytest.raises(anthropic.RateLimitError) as info:
        call(fake_url, streaming=True, asynchronous=False, text=text)
    after = time.time()
    headers = info.value.response.headers
    assert headers[f"anthropic-ratelimit-{spent}-remaining"] == "0"
    assert f"{spent} per 60 s" in info.value.body["error"]["message"]
    # retry-after is the whole seconds from the answer to the reset, rounded up.
    reset = epoch(headers[f"anthropic-ratelimit-{spent}-reset"])
    assert before - 1 < reset - int(headers["retry-after"]) <= after


def test_budget_window_starts_again(fake_url: str) -> None:
    admin(fake_url, "/_fake/limits", {"requests_per_minute": 1, "window_seconds": 1})
    first = call(fake_url, streaming=False, asynchronous=False).headers
    wait_for(lambda: _succeeds(fake_url), what="a call in the next window")
    assert time.time() >= epoch(first["anthropic-ratelimit-requests-reset"])


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/_fake/storm", {"seconds": 5, "status": 500}, "status"),
        ("/_fake/storm", {"seconds": -1}, "seconds"),
        ("/_fake/storm", {"secs": 5}, "unknown fields"),
        ("/_fake/limits", {"requests_per_minute": "many"}, "requests_per_minute"),
        ("/_fake/limits", {"window_seconds": 0}, "window_seconds"),
        ("/_fake/limits", [1], "JSON object"),
    ],
)
def test_bad_admin_body_is_400(fake_url: str, path: str, body: Any, fragment: str) -> None:
    status, _, payload = raw(fake_url, "POST", path, body)
    assert status == 400
    error = json.loads(payload)["error"]
    assert error["type"] == "invalid_request_error" and fragment in error["message"]
