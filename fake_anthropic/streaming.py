"""Timing behaviour: streaming SSE events and hanging without sending bytes."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from typing import Any

from .directives import Directives
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


def stream_events(
    d: Directives,
    skeleton: dict[str, Any],
    input_tokens: int,
    tokens: list[str],
    stop_reason: str,
    delay_s: float,
    sock: socket.socket | None,
) -> Iterator[bytes]:
    """SSE events in the real API's order, one yielded chunk per event."""
    if d.hang and not d.after:
        yield b""  # flushes the 200 status and headers, but no body bytes
        wait_idle(sock)
        return

    start = {**skeleton, "usage": {**d.input_usage(input_tokens), "output_tokens": 1}}
    yield sse("message_start", {"type": "message_start", "message": start})
    yield sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
    )
    yield sse("ping", {"type": "ping"})

    # Index of the delta before which the injected failure happens, if any.
    fail_at = None
    if d.hang or d.mid_stream_error:
        fail_at = min(d.after if d.after is not None else 2, len(tokens))
    for i in range(len(tokens) + 1):
        if i == fail_at:
            if d.mid_stream_error:
                yield sse("error", error_body(d.mid_stream_error))
            else:
                wait_idle(sock)
            return
        if i == len(tokens):
            break
        if i and delay_s:
            time.sleep(delay_s)
        delta = {"type": "text_delta", "text": tokens[i]}
        yield sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": delta},
        )

    yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": len(tokens)},
        },
    )
    yield sse("message_stop", {"type": "message_stop"})
