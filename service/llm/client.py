"""One streaming Messages call through the official async SDK.

One `LLMClient` (one `AsyncAnthropic`, one connection pool) serves every call a worker
process makes. A call is stopped from outside by cancelling the task awaiting it (a
cancel request, the job's deadline): asyncio cancellation interrupts even a silent
provider, and the SDK closes the response on the way out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic
import httpx2
from anthropic.types import MessageParam, TextBlockParam

from service.llm.errors import classify

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LLMRequest:
    model: str
    max_tokens: int
    messages: list[dict[str, Any]]
    system: str | list[dict[str, Any]] | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class LLMReply:
    text: str
    stop_reason: str | None
    input_tokens: int
    output_tokens: int
    model: str
    extra_usage: dict[str, int] = field(default_factory=dict)


@dataclass
class CallUsage:
    """What the provider bills for one call, as far as its stream showed it: kept up to
    date while the reply streams, so a call cut short (canceled, timed out, failed
    mid-stream) still says what it cost."""

    input_tokens: int = 0
    reported_output_tokens: int | None = None  # the last message_delta's cumulative count
    chunks: int = 0  # text deltas seen; about one token each

    @property
    def output_tokens(self) -> int:
        return self.reported_output_tokens if self.reported_output_tokens is not None else self.chunks

    @property
    def billed(self) -> bool:
        return self.input_tokens > 0 or self.output_tokens > 0


# Called with the headers of every call the provider accepted (its rate-limit figures).
ResponseHook = Callable[[httpx2.Headers], None]


class LLMClient:
    """Streams replies. The SDK's own retries are off: the job layer retries, so that
    waiting out a `retry-after` never holds a slot."""

    def __init__(
        self,
        sdk: anthropic.AsyncAnthropic | None = None,
        *,
        read_timeout_s: float = 120.0,
        max_connections: int = 1000,
        on_response: ResponseHook | None = None,
    ):
        # ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL are read by the SDK itself. The SDK's
        # aiohttp transport: a worker streams hundreds of replies at once, and aiohttp's C
        # HTTP parser costs ~40 % less CPU per job than the default httpx2/h11 stack
        # (bench/RESULTS.md). The pool allows as many connections as the calls this process
        # runs at once.
        limits = httpx2.Limits(max_connections=max_connections)
        # Its own OpenTelemetry spans off: the job's trace has the call's span already
        # (service/tasks/llm_spans.py); the SDK's would repeat it, cost CPU per streamed event,
        # send the callers' trace context to the provider, and hold the prompt and the reply
        # if ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE=content were set.
        self._sdk = sdk or anthropic.AsyncAnthropic(
            max_retries=0, http_client=anthropic.DefaultAioHttpClient(limits=limits), open_telemetry=False
        )
        self._read_timeout_s = read_timeout_s
        self._on_response = on_response

    @property
    def api_key(self) -> str | None:
        return self._sdk.api_key

    async def stream(self, request: LLMRequest, on_text: Callable[[str], None], usage: CallUsage) -> LLMReply:
        """Stream the reply, passing each text delta to `on_text` and keeping `usage` up to
        date. Raises `LLMError` for every failure of the call."""
        texts: list[str] = []
        stop_reason: str | None = None
        model, extra_usage = request.model, {}
        try:
            # The SDK's raw events (`AsyncStream.raw_events`), read as JSON: its typed
            # stream validates every event against the union of event models (~15 % of a
            # worker's CPU, measured in bench/RESULTS.md), and its MessageStream helper also
            # rebuilds the whole message at each event. The reply is assembled here from
            # the three events that carry it; an `error` event is raised as the SDK would.
            call = self._sdk.messages.with_streaming_response.create(
                model=request.model,
                max_tokens=request.max_tokens,
                messages=cast("list[MessageParam]", request.messages),
                stream=True,
                system=cast("str | list[TextBlockParam]", request.system)
                if request.system is not None
                else anthropic.omit,
                # The SDK has no `temperature` keyword on create(); it goes in the body.
                extra_body={"temperature": request.temperature} if request.temperature is not None else None,
                # Per read: a stalled stream fails the attempt (retryable); the job's
                # deadline is enforced by the caller, which cancels the task.
                timeout=httpx2.Timeout(self._read_timeout_s, connect=CONNECT_TIMEOUT_S),
            )
            async with call as response:
                if self._on_response is not None:
                    self._on_response(response.headers)
                async for sse in anthropic.AsyncStream.raw_events(response.http_response):
                    kind = sse.event  # ping, content_block_start/stop, message_stop: nothing to keep
                    if kind == "content_block_delta":
                        delta = sse.json()["delta"]
                        if delta.get("type") == "text_delta":
                            usage.chunks += 1
                            texts.append(delta["text"])
                            on_text(delta["text"])
                    elif kind == "message_start":
                        message = sse.json()["message"]
                        usage.input_tokens = message["usage"]["input_tokens"]
                        model, extra_usage = message["model"], _extra_usage(message["usage"])
                    elif kind == "message_delta":
                        data = sse.json()
                        usage.reported_output_tokens = data["usage"]["output_tokens"]
                        stop_reason = data["delta"]["stop_reason"]
                    elif kind == "error":
                        raise _stream_error(sse, response.http_response)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise classify(exc) from exc
        return LLMReply(
            text="".join(texts),
            stop_reason=stop_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            model=model,
            extra_usage=extra_usage,
        )

    async def aclose(self) -> None:
        await self._sdk.close()


def _extra_usage(usage: dict[str, Any]) -> dict[str, int]:
    """Prompt-cache token counts, when the provider reports them."""
    return {
        name: value
        for name in ("cache_creation_input_tokens", "cache_read_input_tokens")
        if isinstance(value := usage.get(name), int)
    }


def _stream_error(sse: Any, response: httpx2.Response) -> anthropic.APIStatusError:
    """An `error` event in the middle of a stream (HTTP status 200), as the SDK's own stream raises it."""
    try:
        body = sse.json()
        message = f"{body}"
    except ValueError:
        body, message = sse.data, sse.data or f"Error code: {response.status_code}"
    return anthropic.APIStatusError(message, response=response, body=body)
