"""One streaming Messages call through the official SDK, stoppable from outside."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from anthropic.lib.streaming import MessageStream

from service.llm.errors import classify
from service.llm.stop_token import StopToken

CONNECT_TIMEOUT_S = 5.0
DEADLINE_SLACK_S = 0.05  # a read timeout at the deadline must find the token already stopped


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


class LLMClient:
    """Streams one reply. The SDK's own retries are off: the job layer retries, so that
    waiting out a `retry-after` never holds a worker slot."""

    def __init__(self, sdk: anthropic.Anthropic | None = None, read_timeout_s: float = 120.0):
        # ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL are read by the SDK itself.
        self._sdk = sdk or anthropic.Anthropic(max_retries=0)
        self._read_timeout_s = read_timeout_s

    def stream(self, request: LLMRequest, on_text: Callable[[str], None], stop: StopToken) -> LLMReply:
        """Stream the reply, passing each text delta to `on_text`.

        Raises `Stopped` when the token's deadline passes or it is canceled (the
        connection is closed even if the provider is silent), `LLMError` otherwise.
        """
        stop.raise_if_stopped()
        optional: dict[str, Any] = {}
        if request.system is not None:
            optional["system"] = request.system
        if request.temperature is not None:
            # The SDK has no `temperature` keyword on stream(); it goes in the body.
            optional["extra_body"] = {"temperature": request.temperature}
        try:
            with (
                self._sdk.messages.stream(
                    model=request.model,
                    max_tokens=request.max_tokens,
                    messages=request.messages,
                    # Per read: a stalled stream fails the attempt (retryable); never past the
                    # deadline, which also bounds the wait for headers, before the watcher runs.
                    timeout=httpx2.Timeout(
                        min(self._read_timeout_s, stop.remaining_s() + DEADLINE_SLACK_S), connect=CONNECT_TIMEOUT_S
                    ),
                    **optional,
                ) as stream,
                stop.closing(lambda: _interrupt(stream)),
            ):
                for event in stream:
                    stop.raise_if_stopped()
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        on_text(event.delta.text)
                # A stream closed by the watcher may just end instead of raising.
                stop.raise_if_stopped()
                final = stream.get_final_message()
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            # A connection closed by the watcher surfaces here as a read error.
            stop.raise_if_stopped()
            raise classify(exc) from exc
        return _reply(final)


def _interrupt(stream: MessageStream) -> None:
    """Wake a reader blocked on a silent provider. Closing the response from another
    thread does not interrupt a blocked recv(); shutting the socket down does, and the
    reading thread then unwinds and closes the stream itself."""
    network_stream = stream.response.extensions.get("network_stream")
    sock = network_stream.get_extra_info("socket") if network_stream is not None else None
    if sock is None:
        stream.close()
        return
    with contextlib.suppress(OSError):  # already closed by the peer
        sock.shutdown(socket.SHUT_RDWR)


def _reply(message: anthropic.types.Message) -> LLMReply:
    text = "".join(block.text for block in message.content if block.type == "text")
    usage = message.usage
    extra = {
        name: value
        for name in ("cache_creation_input_tokens", "cache_read_input_tokens")
        if isinstance(value := getattr(usage, name, None), int)
    }
    return LLMReply(
        text=text,
        stop_reason=message.stop_reason,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        model=message.model,
        extra_usage=extra,
    )
