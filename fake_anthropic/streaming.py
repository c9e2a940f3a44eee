"""Timing behaviour: streaming SSE events and hanging without sending bytes."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from typing import Any

from .directives import Directives
from .replies import Reply
from .wire import error_body, sse

HANG_LIMIT_S = 600.0
# How often a hanging request checks whether its client went away.
HANG_POLL_S = 0.5


def _peer_closed(sock: socket.socket) -> bool:
    """Called when sock is readable. The request body was fully read already, so
    readability almost always means EOF: the client closed the connection."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def wait_idle(sock: socket.socket | None, seconds: float = HANG_LIMIT_S) -> bool:
    """Send nothing for `seconds`; return True early if the client went away.

    Used for hangs and latency. It must not write a single byte (that would
    reset client read timeouts), so a disconnect is detected by polling the
    socket rather than by a failed write, which keeps abandoned requests from
    pinning a server thread for the whole 600 s.
    """
    if sock is None:  # not under werkzeug's server: no socket to watch
        time.sleep(seconds)
        return False
    deadline = time.monotonic() + seconds
    # A selector (epoll/kqueue) rather than select(): fds can exceed 1024 under load.
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if selector.select(timeout=min(HANG_POLL_S, remaining)):
                if _peer_closed(sock):
                    return True
                # Unexpected extra bytes, not EOF: keep polling, slowly, not in a spin.
                time.sleep(min(HANG_POLL_S, max(0.0, deadline - time.monotonic())))
    return False


def output_usage(reply: Reply) -> dict[str, Any]:
    usage: dict[str, Any] = {"output_tokens": reply.output_tokens}
    if reply.thinking_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": reply.thinking_tokens}
    return usage


def stream_events(
    d: Directives,
    skeleton: dict[str, Any],
    usage: dict[str, Any],
    reply: Reply,
    delay_s: float,
    sock: socket.socket | None,
) -> Iterator[bytes]:
    """SSE events in the real API's order, one yielded chunk per event."""
    if d.hang and not d.after:
        yield b""  # flushes the 200 status and headers, but no body bytes
        wait_idle(sock)
        return

    start = {**skeleton, "usage": {**usage, "output_tokens": 1}}
    yield sse("message_start", {"type": "message_start", "message": start})
    # Index of the delta (over all blocks) before which the injected failure happens, if any.
    fail_at = None
    if d.hang or d.mid_stream_error:
        fail_at = min(d.after if d.after is not None else 2, reply.output_tokens)
    sent = 0
    for index, block in enumerate(reply.blocks):
        yield sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block.start})
        if index == 0:
            yield sse("ping", {"type": "ping"})
        for citation in block.citations:
            cite = {"type": "citations_delta", "citation": citation}
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": cite})
        for delta in block.deltas:
            if sent == fail_at:
                yield from _fail(d, sock)
                return
            if sent and delay_s:
                time.sleep(delay_s)
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            sent += 1
        if block.signature is not None:
            signature = {"type": "signature_delta", "signature": block.signature}
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": signature})
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
    if sent == fail_at:
        yield from _fail(d, sock)
        return
    # Cumulative counts, as the real API sends them; the cache-write split is message_start's alone.
    final = {name: value for name, value in usage.items() if name != "cache_creation"}
    yield sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
            "usage": {**final, **output_usage(reply)},
        },
    )
    yield sse("message_stop", {"type": "message_stop"})


def _fail(d: Directives, sock: socket.socket | None) -> Iterator[bytes]:
    if d.mid_stream_error:
        yield sse("error", error_body(d.mid_stream_error))
    else:
        wait_idle(sock)
