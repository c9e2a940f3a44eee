"""One streaming Messages call through the official async SDK: the request sent whole.

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

from service.llm.batches import BatchesClient
from service.llm.errors import LLMError, classify
from service.llm.message import MalformedToolInput, MessageAssembler, message_text

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LLMRequest:
    """One Messages request as the SDK's `messages.create` takes it (`stream` aside), and the
    betas that send it to the beta endpoint instead (they are not part of a request's
    params: the Message Batches API takes them on the batch)."""

    params: dict[str, Any]
    betas: tuple[str, ...] = ()

    @property
    def model(self) -> str:
        return self.params["model"]


@dataclass(frozen=True)
class LLMReply:
    message: dict[str, Any]  # the Message as the provider finished it: every block, stop and usage field

    @property
    def text(self) -> str:
        return message_text(self.message)

    @property
    def stop_reason(self) -> str | None:
        return self.message.get("stop_reason")


@dataclass
class CallUsage:
    """What the provider bills for one call, as far as its stream showed it: kept up to
    date while the reply streams, so a call cut short (canceled, timed out, failed
    mid-stream) still says what it cost."""

    reported: dict[str, Any] = field(default_factory=dict)  # the message's usage, every field the provider sent
    chunks: int = 0  # deltas seen; about one token each
    counted: bool = False  # a message_delta gave the exact output count

    @property
    def input_tokens(self) -> int:
        return self.reported.get("input_tokens") or 0

    @property
    def output_tokens(self) -> int:
        # message_start's output_tokens is a placeholder; until message_delta, the deltas count better.
        return self.reported.get("output_tokens") or 0 if self.counted else self.chunks

    @property
    def billed(self) -> bool:
        return self.input_tokens > 0 or self.output_tokens > 0

    def as_usage(self) -> dict[str, Any]:
        """The usage as the provider reports it (output: counted from the deltas until it reports it)."""
        return {**self.reported, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


# Called with the headers of every call the provider accepted (its rate-limit figures).
ResponseHook = Callable[[httpx2.Headers], None]
# Called with each delta of the reply: its block's index and the delta as the provider sent it.
DeltaHook = Callable[[int, dict[str, Any]], None]


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

    async def stream(self, request: LLMRequest, on_delta: DeltaHook, usage: CallUsage) -> LLMReply:
        """Send the request whole and stream the reply, passing each delta to `on_delta`
        and keeping `usage` up to date. Raises `LLMError` for every failure of the call."""
        assembler = MessageAssembler()
        try:
            # The SDK's raw events (`AsyncStream.raw_events`), read as JSON: its typed
            # stream validates every event against the union of event models (~15 % of a
            # worker's CPU, measured in bench/RESULTS.md), and its MessageStream helper also
            # rebuilds the whole message at each event. The Message is assembled from the
            # events here (MessageAssembler); an `error` event is raised as the SDK would.
            async with self._call(request) as response:
                if self._on_response is not None:
                    self._on_response(response.headers)
                async for sse in anthropic.AsyncStream.raw_events(response.http_response):
                    kind = sse.event  # ping, message_stop: nothing to keep
                    if kind == "content_block_delta":
                        data = sse.json()
                        usage.chunks += 1
                        assembler.delta(data["index"], data["delta"])
                        on_delta(data["index"], data["delta"])
                    elif kind == "content_block_start":
                        data = sse.json()
                        assembler.block_start(data["index"], data["content_block"])
                    elif kind == "content_block_stop":
                        assembler.block_stop(sse.json()["index"])
                    elif kind == "message_start":
                        assembler.start(sse.json()["message"])
                        usage.reported = assembler.usage  # one dict: message_delta's counts land in both
                    elif kind == "message_delta":
                        assembler.message_delta(sse.json())
                        usage.counted = True
                    elif kind == "error":
                        raise _stream_error(sse, response.http_response)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise classify(exc) from exc
        except MalformedToolInput as exc:
            raise LLMError("api_error", str(exc), retryable=True) from exc
        message = assembler.finish()
        message["usage"] = usage.as_usage()
        return LLMReply(message)

    def _call(self, request: LLMRequest) -> Any:
        # Per read: a stalled stream fails the attempt (retryable); the job's deadline is
        # enforced by the caller, which cancels the task.
        timeout = httpx2.Timeout(self._read_timeout_s, connect=CONNECT_TIMEOUT_S)
        params = cast("Any", request.params)
        if request.betas:
            return self._sdk.beta.messages.with_streaming_response.create(
                **params, betas=list(request.betas), stream=True, timeout=timeout
            )
        return self._sdk.messages.with_streaming_response.create(**params, stream=True, timeout=timeout)

    def batches(self) -> BatchesClient:
        """The Message Batches API over this client's connection pool."""
        return BatchesClient(self._sdk, timeout_s=self._read_timeout_s)

    async def aclose(self) -> None:
        await self._sdk.close()


def _stream_error(sse: Any, response: httpx2.Response) -> anthropic.APIStatusError:
    """An `error` event in the middle of a stream (HTTP status 200), as the SDK's own stream raises it."""
    try:
        body = sse.json()
        message = f"{body}"
    except ValueError:
        body, message = sse.data, sse.data or f"Error code: {response.status_code}"
    return anthropic.APIStatusError(message, response=response, body=body)
