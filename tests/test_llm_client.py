"""The LLM client: the real anthropic SDK over HTTP to the fake server (no mocks)."""

from __future__ import annotations

import asyncio
import time

import anthropic
import pytest
import requests

from service.llm.client import CallUsage, LLMClient, LLMRequest
from service.llm.errors import LLMError


@pytest.fixture
def llm(fake_anthropic: str) -> LLMClient:
    return LLMClient(anthropic.AsyncAnthropic(api_key="test-key", base_url=fake_anthropic, max_retries=0))


def ask(text: str, **fields) -> LLMRequest:
    params = {"model": "claude-sonnet-5-5", "max_tokens": 100, "messages": [{"role": "user", "content": text}]}
    return LLMRequest({**params, **fields})


def run(llm: LLMClient, request: LLMRequest, deadline_s: float = 30.0, usage: CallUsage | None = None):
    chunks: list[str] = []

    def on_delta(_index: int, delta: dict) -> None:
        if delta["type"] == "text_delta":
            chunks.append(delta["text"])

    async def call():
        async with asyncio.timeout(deadline_s):
            return await llm.stream(request, on_delta=on_delta, usage=usage or CallUsage())

    return asyncio.run(call()), chunks


def test_streams_text_in_chunks_and_reports_usage(llm: LLMClient):
    reply, chunks = run(llm, ask("four words please [[fake: tokens=12]]"))
    assert len(chunks) == 12
    assert "".join(chunks) == reply.text
    usage = reply.message["usage"]
    assert usage["output_tokens"] == 12
    assert usage["input_tokens"] == len("four words please [[fake: tokens=12]]") // 4
    assert reply.stop_reason == "end_turn"
    assert reply.message["content"] == [{"type": "text", "text": reply.text}]
    assert reply.message["role"] == "assistant" and reply.message["id"].startswith("msg_")


def test_prompt_cache_counts_are_kept(llm: LLMClient):
    reply, _ = run(llm, ask("cached [[fake: tokens=3 cache_read=40]]"))
    usage = reply.message["usage"]
    assert (usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]) == (0, 40)


def test_max_tokens_caps_the_reply(llm: LLMClient):
    reply, _ = run(llm, ask("long [[fake: tokens=50]]", max_tokens=5))
    assert (reply.message["usage"]["output_tokens"], reply.stop_reason) == (5, "max_tokens")


def test_the_request_reaches_the_provider_whole(llm: LLMClient, fake_anthropic: str):
    requests.delete(f"{fake_anthropic}/_fake/requests", timeout=5)
    extra = {"system": [{"type": "text", "text": "be brief"}], "stop_sequences": ["STOP"], "metadata": {"user_id": "u"}}
    run(llm, ask("hello", **extra))
    (sent,) = requests.get(f"{fake_anthropic}/_fake/requests", timeout=5).json()
    assert sent["body"] == {**ask("hello", **extra).params, "stream": True}


@pytest.mark.parametrize(
    ("directive", "error_type", "retryable", "status"),
    [
        ("error=400", "invalid_request_error", False, 400),
        ("error=401", "authentication_error", False, 401),
        ("error=403", "permission_error", False, 403),
        ("error=404", "not_found_error", False, 404),
        ("error=413", "request_too_large", False, 413),
        ("error=429 retry_after=7", "rate_limit_error", True, 429),
        ("error=429 spend_limit=1", "rate_limit_error", False, 429),
        ("error=500", "api_error", True, 500),
        ("error=529", "overloaded_error", True, 529),
        ("mid_stream_error=overloaded_error after=2", "overloaded_error", True, None),
    ],
)
def test_provider_errors_are_classified(llm: LLMClient, directive, error_type, retryable, status):
    with pytest.raises(LLMError) as caught:
        run(llm, ask(f"x [[fake: {directive}]]"))
    error = caught.value
    assert (error.type, error.retryable, error.status_code) == (error_type, retryable, status)
    assert error.message  # the provider's own words, shown to the client
    if "retry_after=7" in directive:
        assert error.retry_after_s == 7.0
    if "spend_limit" in directive:
        assert "spend limit" in error.message


def test_unreachable_provider_is_a_retryable_connection_error():
    from tests.support.network import free_port

    sdk = anthropic.AsyncAnthropic(api_key="k", base_url=f"http://127.0.0.1:{free_port()}", max_retries=0)
    with pytest.raises(LLMError) as caught:
        run(LLMClient(sdk), ask("hi"))
    assert (caught.value.type, caught.value.retryable) == ("connection_error", True)


@pytest.mark.parametrize(
    "directive",
    ["hang=1", "hang=1 after=3", "latency_ms=20000"],
    ids=["silent-after-headers", "silent-mid-stream", "silent-before-headers"],
)
def test_the_deadline_stops_a_silent_provider(llm: LLMClient, directive: str):
    """The caller's deadline (an asyncio timeout, as the worker sets it) ends the call."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run(llm, ask(f"x [[fake: {directive}]]"), deadline_s=1.0)
    # The fake stays silent for 20 s or more: getting here at all means the deadline cut it.
    assert time.monotonic() - started < 10


def test_cancelling_the_task_stops_a_silent_stream_and_keeps_what_it_cost(llm: LLMClient):
    usage = CallUsage()

    async def call_then_cancel():
        task = asyncio.create_task(llm.stream(ask("x [[fake: hang=1 after=3]]"), on_delta=lambda *_: None, usage=usage))
        await asyncio.sleep(0.5)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(call_then_cancel())
    # Cut short, the call still says what the provider will bill: the prompt, and the chunks seen.
    assert usage.input_tokens == len("x [[fake: hang=1 after=3]]") // 4
    assert (usage.chunks, usage.output_tokens) == (3, 3)


def test_a_finished_stream_reports_the_providers_output_count(llm: LLMClient):
    usage = CallUsage()
    reply, _ = run(llm, ask("x [[fake: tokens=9]]"), usage=usage)
    assert (usage.reported["output_tokens"], usage.output_tokens, reply.message["usage"]["output_tokens"]) == (9, 9, 9)


def test_a_stalled_stream_is_a_retryable_timeout_well_before_the_deadline(fake_anthropic: str):
    llm = LLMClient(anthropic.AsyncAnthropic(api_key="k", base_url=fake_anthropic, max_retries=0), read_timeout_s=0.5)
    with pytest.raises(LLMError) as caught:
        run(llm, ask("x [[fake: hang=1 after=2]]"), deadline_s=30)
    assert (caught.value.type, caught.value.retryable) == ("timeout", True)
