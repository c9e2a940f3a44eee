"""A fake Anthropic Messages API for tests, load benchmarks and local runs.

Speaks enough of the real wire protocol (JSON replies, SSE streams, error
bodies and headers) that the official ``anthropic`` SDK works unchanged when
pointed at it with ``base_url``. Behaviour per request is chosen by a
``[[fake: ...]]`` directive in the last user message; see directives.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from .batches import BatchStore, add_batch_routes, answer_for_batch
from .cache import PromptCache
from .content import read_prompt
from .directives import DirectiveError, Directives, parse_directives
from .models import is_known_model
from .ratelimits import (
    DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_TOKENS_PER_MINUTE,
    STORM_STATUSES,
    Budget,
    Storm,
    limit_headers,
    retry_after_s,
)
from .replies import plan_reply
from .streaming import output_usage, stream_events, wait_idle
from .wire import (
    ERROR_TYPE_BY_STATUS,
    SPEND_LIMIT_ERROR_CODE,
    SPEND_LIMIT_MESSAGE,
    STATUS_BY_ERROR_TYPE,
    InvalidRequest,
    error_body,
    message_skeleton,
    new_id,
    validate_request,
)

REQUEST_LOG_SIZE = 200
DEFAULT_BATCH_DELAY_MS = 2000  # a Message Batch ends this long after its create


class _State:
    """Per-app mutable state, shared by the server's request threads."""

    def __init__(self, budget: Budget, storm: Storm) -> None:
        self.lock = threading.Lock()
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.fail_counts: dict[str, int] = {}
        self.budget = budget
        self.storm = storm
        self.cache = PromptCache()
        self.messages_calls = 0  # POST /v1/messages requests, shown by /_stats

    def record(self, body: Any, header_names: list[str], at: float) -> None:
        with self.lock:
            self.requests.append({"body": body, "headers": header_names, "at": at})

    def storm_hit(self, now: float) -> Storm | None:
        """The storm, if one is on, counting this request as arriving during it."""
        with self.lock:
            if not self.storm.active(now):
                return None
            self.storm.arrivals.append(now)
            return self.storm

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


def _is_authenticated(headers: Headers) -> bool:
    # anthropic 2.x sends the api key as "Authorization: Bearer <key>"; older
    # SDKs and curl users send "x-api-key". Accept either, like the real API.
    if headers.get("x-api-key", "").strip():
        return True
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _rate_limited_headers(limits: dict[str, int], retry_after: int, now: float) -> dict[str, str]:
    """Headers of a 429 that is not the budget's own: nothing left until retry-after."""
    return {
        "retry-after": str(retry_after),
        **limit_headers(limits, dict.fromkeys(limits, 0), now + retry_after),
    }


def _storm_error(storm: Storm, limits: dict[str, int], now: float) -> Response:
    if storm.status == 529:
        # Overload is load across all users, not this key's limit: no retry-after.
        return error_response(529)
    return error_response(429, headers=_rate_limited_headers(limits, storm.retry_after, now))


def _budget_spent(budget: Budget, now: float) -> Response:
    kind = budget.spent(now)
    assert kind is not None
    message = f"This request would exceed your rate limit of {budget.limits()[kind]} {kind} per {budget.window_s} s"
    headers = {"retry-after": str(retry_after_s(now, budget.window_end)), **budget.headers(now)}
    return error_response(429, message, headers=headers)


def _directed_error(d: Directives, limits: dict[str, int]) -> Response:
    """The immediate error a directive asked for (error=STATUS)."""
    assert d.error is not None
    if d.error != 429:
        return error_response(d.error)
    headers = _rate_limited_headers(limits, d.retry_after, time.time())
    if d.spend_limit:
        # Retrying cannot help until someone raises the limit; tell the SDK so.
        headers["x-should-retry"] = "false"
        return error_response(429, SPEND_LIMIT_MESSAGE, error_code=SPEND_LIMIT_ERROR_CODE, headers=headers)
    return error_response(429, headers=headers)


def _admin_ints(body: Any, minimums: dict[str, int]) -> dict[str, int]:
    """The integer fields of an admin request body, each checked against its minimum."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    unknown = set(body) - set(minimums)
    if unknown:
        raise InvalidRequest(f"unknown fields {sorted(unknown)} (known: {sorted(minimums)})")
    for name, value in body.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < minimums[name]:
            raise InvalidRequest(f"{name}: Input should be an integer >= {minimums[name]}")
    return body


def create_app(
    chunk_delay_s: float = 0.01,
    budget: Budget | None = None,
    storm: Storm | None = None,
    batch_delay_s: float = DEFAULT_BATCH_DELAY_MS / 1000,
) -> Flask:
    """Build the fake; chunk_delay_s is the default pause between stream deltas.

    `budget` is the per-minute rate limit (default: too high to meet), `storm` a
    storm to start with (default: none), `batch_delay_s` how long a Message Batch takes.
    """
    app = Flask(__name__)
    state = _State(budget or Budget(), storm or Storm())
    app.extensions["fake_anthropic"] = state
    batches = BatchStore(batch_delay_s, lambda params: answer_for_batch(params, state.cache.account, state.bump))
    add_batch_routes(app, batches, error_response, lambda: _is_authenticated(request.headers), state.bump)

    @app.get("/_stats")
    def stats() -> Response:
        """Counters: Messages calls, and the Message Batches API's creates, requests, cancels
        and result lines served."""
        with state.lock, batches.lock:
            return jsonify(
                {"messages_calls": state.messages_calls, **batches.stats, "batch_delay_ms": batches.delay_s * 1000}
            )

    @app.after_request
    def add_headers(response: Response) -> Response:
        response.headers.setdefault("request-id", new_id("req"))
        if request.path == "/v1/messages":
            # Every answer reports the budget, as the real API's do; 429s set their own first.
            with state.lock:
                budget_headers = state.budget.headers(time.time())
            for name, value in budget_headers.items():
                response.headers.setdefault(name, value)
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

    @app.get("/_fake/storm")
    def show_storm() -> Response:
        with state.lock:
            return jsonify(state.storm.as_dict(time.time()))

    @app.post("/_fake/storm")
    def start_storm() -> Response:
        """{"seconds": N, "retry_after": S, "status": 429|529} refuses every messages
        request for N seconds from now; seconds=0 ends the current storm early."""
        try:
            body = request.get_json(force=True, silent=True)
            fields = _admin_ints(body, {"seconds": 0, "retry_after": 0, "status": 0})
            if fields.get("status", 429) not in STORM_STATUSES:
                raise InvalidRequest(f"status: Input should be one of {STORM_STATUSES}")
        except InvalidRequest as exc:
            return error_response(400, str(exc))
        now = time.time()
        with state.lock:
            if fields.get("seconds", 0):
                state.storm = Storm.starting(now, **fields)
            else:  # keep the ended storm's counts readable
                state.storm.ends = max(state.storm.started, min(state.storm.ends, now))
            return jsonify(state.storm.as_dict(now))

    @app.get("/_fake/limits")
    def show_limits() -> Response:
        with state.lock:
            return jsonify(state.budget.as_dict(time.time()))

    @app.post("/_fake/limits")
    def set_limits() -> Response:
        """Replace the budget (fields not given keep their value); a fresh window starts now."""
        try:
            fields = _admin_ints(
                request.get_json(force=True, silent=True),
                {"requests_per_minute": 0, "tokens_per_minute": 0, "window_seconds": 1},
            )
        except InvalidRequest as exc:
            return error_response(400, str(exc))
        with state.lock:
            old = state.budget
            state.budget = Budget(
                requests_per_minute=fields.get("requests_per_minute", old.requests_per_minute),
                tokens_per_minute=fields.get("tokens_per_minute", old.tokens_per_minute),
                window_s=fields.get("window_seconds", old.window_s),
            )
            return jsonify(state.budget.as_dict(time.time()))

    @app.post("/v1/messages")
    def messages() -> Response:
        sent = request.get_json(force=True, silent=True)
        now = time.time()
        # Header names only: values would include API keys.
        state.record(sent, [name.lower() for name, _ in request.headers.items()], now)
        with state.lock:
            state.messages_calls += 1
        if not _is_authenticated(request.headers):
            return error_response(401, "missing API key: send x-api-key or Authorization: Bearer <key>")
        if storm := state.storm_hit(now):
            return _storm_error(storm, state.budget.limits(), now)
        try:
            body = validate_request(sent)
            prompt = read_prompt(body)
            d = parse_directives(prompt.last_user_text)
        except (InvalidRequest, DirectiveError) as exc:
            return error_response(400, str(exc))
        if not is_known_model(body["model"]):
            return error_response(404, f"model: {body['model']}")

        if d.fail_times is not None and d.key and state.bump(d.key) > d.fail_times:
            d = d.without_failures()
        try:
            reply = plan_reply(body, d, prompt.last_user_text)
        except InvalidRequest as exc:
            return error_response(400, str(exc))
        usage = d.input_usage(max(1, prompt.chars // 4)) if d.cache_read is not None else state.cache.account(prompt)
        with state.lock:
            if not state.budget.admit(now, usage["input_tokens"], reply.output_tokens):
                return _budget_spent(state.budget, now)
        # Only werkzeug's own server exposes this; it lets waits notice disconnects.
        sock = request.environ.get("werkzeug.socket")
        if d.latency_ms:
            # Disconnect-aware, so latency_ms=600000 doubles as a hang before headers.
            wait_idle(sock, d.latency_ms / 1000)

        streaming = body.get("stream") is True
        if d.error is not None:
            return _directed_error(d, state.budget.limits())
        if d.mid_stream_error and not streaming:
            # No stream to break: fail the whole request with the matching status.
            return error_response(STATUS_BY_ERROR_TYPE[d.mid_stream_error], error_type=d.mid_stream_error)

        delay_s = chunk_delay_s if d.chunk_delay_ms is None else d.chunk_delay_ms / 1000
        skeleton = message_skeleton(new_id("msg"), body["model"])

        if streaming:
            events = stream_events(d, skeleton, usage, reply, delay_s, sock)
            return Response(
                events,
                mimetype="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )

        if d.hang:
            wait_idle(sock)
        # Take as long as the equivalent stream would, so latency looks alike.
        time.sleep(delay_s * max(0, reply.output_tokens - 1))
        return jsonify(
            {
                **skeleton,
                "content": [block.final() for block in reply.blocks],
                "stop_reason": reply.stop_reason,
                "stop_sequence": reply.stop_sequence,
                "usage": {**usage, **output_usage(reply)},
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
    parser.add_argument("--requests-per-minute", type=int, default=DEFAULT_REQUESTS_PER_MINUTE)
    parser.add_argument(
        "--tokens-per-minute",
        type=int,
        default=DEFAULT_TOKENS_PER_MINUTE,
        help="limit for input tokens and, separately, output tokens",
    )
    parser.add_argument(
        "--batch-delay-ms",
        type=float,
        default=float(os.environ.get("FAKE_BATCH_DELAY_MS", DEFAULT_BATCH_DELAY_MS)),
        help="how long a Message Batch takes to end (env FAKE_BATCH_DELAY_MS)",
    )
    parser.add_argument("--storm-seconds", type=float, default=0, help="refuse every request for this long from start")
    parser.add_argument("--storm-status", type=int, choices=STORM_STATUSES, default=429)
    parser.add_argument("--storm-retry-after", type=int, default=1, help="retry-after of a 429 storm, in seconds")
    args = parser.parse_args(argv)

    app = create_app(
        chunk_delay_s=args.chunk_delay_ms / 1000,
        budget=Budget(requests_per_minute=args.requests_per_minute, tokens_per_minute=args.tokens_per_minute),
        storm=Storm.starting(time.time(), args.storm_seconds, args.storm_status, args.storm_retry_after),
        batch_delay_s=args.batch_delay_ms / 1000,
    )
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
