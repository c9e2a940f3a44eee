"""A fake Anthropic Messages API for tests, load benchmarks and local runs.

Speaks enough of the real wire protocol (JSON replies, SSE streams, error
bodies and headers) that the official ``anthropic`` SDK works unchanged when
pointed at it with ``base_url``. Behaviour per request is chosen by a
``[[fake: ...]]`` directive in the last user message; see directives.py.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from .directives import DirectiveError, Directives, parse_directives
from .streaming import stream_events, wait_idle
from .wire import (
    ERROR_TYPE_BY_STATUS,
    SPEND_LIMIT_ERROR_CODE,
    SPEND_LIMIT_MESSAGE,
    STATUS_BY_ERROR_TYPE,
    InvalidRequest,
    error_body,
    generate_tokens,
    message_skeleton,
    new_id,
    validate_request,
)

REQUEST_LOG_SIZE = 200
RATE_LIMIT_REQUESTS = 50


class _State:
    """Per-app mutable state, shared by the server's request threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.fail_counts: dict[str, int] = {}

    def record(self, body: Any, header_names: list[str]) -> None:
        with self.lock:
            self.requests.append({"body": body, "headers": header_names})

    def bump(self, key: str) -> int:
        """Count one more request for a fail_times key; returns the new count."""
        with self.lock:
            self.fail_counts[key] = self.fail_counts.get(key, 0) + 1
            return self.fail_counts[key]


def error_response(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    error_code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    error_type = error_type or ERROR_TYPE_BY_STATUS.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    response = jsonify(error_body(error_type, message, error_code))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _is_authenticated(headers: Mapping[str, str]) -> bool:
    # anthropic 2.x sends the api key as "Authorization: Bearer <key>"; older
    # SDKs and curl users send "x-api-key". Accept either, like the real API.
    if headers.get("x-api-key", "").strip():
        return True
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _directed_error(d: Directives) -> Response:
    """The immediate error a directive asked for (error=STATUS)."""
    assert d.error is not None
    if d.error != 429:
        return error_response(d.error)
    reset = datetime.now(UTC) + timedelta(seconds=d.retry_after)
    headers = {
        "retry-after": str(d.retry_after),
        "anthropic-ratelimit-requests-limit": str(RATE_LIMIT_REQUESTS),
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if d.spend_limit:
        # Retrying cannot help until someone raises the limit; tell the SDK so.
        headers["x-should-retry"] = "false"
        return error_response(429, SPEND_LIMIT_MESSAGE, error_code=SPEND_LIMIT_ERROR_CODE, headers=headers)
    return error_response(429, headers=headers)


def create_app(chunk_delay_s: float = 0.01) -> Flask:
    """Build the fake; chunk_delay_s is the default pause between stream deltas."""
    app = Flask(__name__)
    state = _State()
    app.extensions["fake_anthropic"] = state

    @app.after_request
    def add_request_id(response: Response) -> Response:
        response.headers.setdefault("request-id", new_id("req"))
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        # Unknown routes, wrong methods etc. still answer in the API's error shape.
        return error_response(exc.code or 500, exc.description)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    @app.get("/_fake/requests")
    def list_requests() -> Response:
        with state.lock:
            return jsonify(list(state.requests))

    @app.delete("/_fake/requests")
    def clear_requests() -> Response:
        with state.lock:
            state.requests.clear()
        return jsonify({"ok": True})

    @app.post("/v1/messages")
    def messages() -> Response:
        body = request.get_json(force=True, silent=True)
        # Header names only: values would include API keys.
        state.record(body, [name.lower() for name, _ in request.headers.items()])
        if not _is_authenticated(request.headers):
            return error_response(401, "missing API key: send x-api-key or Authorization: Bearer <key>")
        try:
            texts, last_user_text = validate_request(body)
            d = parse_directives(last_user_text)
        except (InvalidRequest, DirectiveError) as exc:
            return error_response(400, str(exc))

        if d.fail_times is not None and d.key and state.bump(d.key) > d.fail_times:
            d = d.without_failures()
        # Only werkzeug's own server exposes this; it lets waits notice disconnects.
        sock = request.environ.get("werkzeug.socket")
        if d.latency_ms:
            # Disconnect-aware, so latency_ms=600000 doubles as a hang before headers.
            wait_idle(sock, d.latency_ms / 1000)

        streaming = body.get("stream") is True
        if d.error is not None:
            return _directed_error(d)
        if d.mid_stream_error and not streaming:
            # No stream to break: fail the whole request with the matching status.
            return error_response(STATUS_BY_ERROR_TYPE[d.mid_stream_error], error_type=d.mid_stream_error)

        input_tokens = max(1, sum(len(t) for t in texts) // 4)
        max_tokens = body["max_tokens"]
        tokens = generate_tokens(min(d.tokens, max_tokens))
        stop_reason = "max_tokens" if d.tokens > max_tokens else "end_turn"
        delay_s = chunk_delay_s if d.chunk_delay_ms is None else d.chunk_delay_ms / 1000
        skeleton = message_skeleton(new_id("msg"), body["model"])

        if streaming:
            events = stream_events(d, skeleton, input_tokens, tokens, stop_reason, delay_s, sock)
            return Response(
                events,
                mimetype="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )

        if d.hang:
            wait_idle(sock)
        # Take as long as the equivalent stream would, so latency looks alike.
        time.sleep(delay_s * max(0, len(tokens) - 1))
        text = "".join(tokens)
        return jsonify(
            {
                **skeleton,
                "content": [{"type": "text", "text": text}],
                "stop_reason": stop_reason,
                "usage": {"input_tokens": input_tokens, "output_tokens": len(tokens)},
            }
        )

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake_anthropic", description="Fake Anthropic Messages API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--chunk-delay-ms",
        type=float,
        default=10.0,
        help="default pause between stream deltas",
    )
    args = parser.parse_args(argv)

    app = create_app(chunk_delay_s=args.chunk_delay_ms / 1000)
    server = make_server(args.host, args.port, app, threaded=True)

    def stop(signum: int, frame: object) -> None:
        # werkzeug's serve_forever treats KeyboardInterrupt as a clean stop.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"fake-anthropic listening on http://{args.host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # a signal landing outside serve_forever's own handler
        pass
    finally:
        server.server_close()
    return 0
