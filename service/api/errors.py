"""One error shape for every failure, from every route: flask-smorest's
`{"code", "status", "message", "errors"?}`. Never an HTML page, never a traceback."""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, Response, make_response, request
from flask_limiter import RateLimitExceeded
from flask_smorest import Api
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, ReadOnlyError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import Conflict, HTTPException, RequestEntityTooLarge, ServiceUnavailable, TooManyRequests

from service.api.limits import allowance_headers, change_limit_wait_s
from service.jobs.push.job_webhooks import DeliveryPending, TooManyPendingDeliveries
from service.jobs.storage.admission import OverBudget, OverLimit, QueueFull
from service.jobs.storage.idempotency import IdempotencyConflict
from service.jobs.storage.replication import NotReplicated

REDIS_DOWN_RETRY_AFTER_S = 5
QUEUE_FULL_RETRY_AFTER_S = 30
PENDING_DELIVERIES_RETRY_AFTER_S = 60  # deliveries settle in seconds to hours; a minute is a fair first wait

log = logging.getLogger(__name__)


class JsonErrorApi(Api):
    """flask-smorest's Api, with a message on every error: the caller's, else a summary
    of the validation errors, else werkzeug's description of the status."""

    def handle_http_exception(self, error: HTTPException):
        payload, code, headers = super().handle_http_exception(error)
        # werkzeug's own headers (Allow on a 405, ...), which flask-smorest drops.
        own = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        headers = {**own, **(headers or {})}
        if "message" not in payload:
            payload["message"] = summarize(payload["errors"]) if "errors" in payload else error.description
        return payload, code, headers


def summarize(errors: dict | list, limit: int = 3) -> str:
    """`{"json": {"max_tokens": ["Not a valid integer."]}}` -> "json.max_tokens: Not a valid integer."."""
    lines = []

    def walk(node: dict | list | str, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else str(key))
        elif isinstance(node, list):
            for item in node:
                walk(item, where)
        else:
            lines.append(f"{where}: {node}" if where else str(node))

    walk(errors, "")
    more = f" (+{len(lines) - limit} more)" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def register_error_handlers(app: Flask, api: JsonErrorApi) -> None:
    def respond(error: HTTPException) -> Response:
        # flask-smorest's handler answers (body, status, headers): made into the Response
        # Flask's error handlers are typed to return.
        return make_response(api.handle_http_exception(error))

    def answer(error: HTTPException, message: str, headers: dict[str, str] | None = None) -> Response:
        # flask-smorest's handler reads `data`, an attribute it (and webargs' abort) adds.
        error.data = {"message": message, **({"headers": headers} if headers else {})}  # type: ignore[attr-defined]
        return respond(error)

    def redis_unavailable(_exc: Exception):
        message = "the job store is unavailable; try again shortly"
        return answer(ServiceUnavailable(), message, {"Retry-After": str(REDIS_DOWN_RETRY_AFTER_S)})

    def redis_full(exc: RedisOutOfMemoryError):
        # maxmemory reached with `noeviction` (docs/operations/production.md): writes are
        # refused until finished jobs expire or Redis gets more memory. For the client it is
        # the store being unavailable; the operator needs to hear of it.
        log.error("Redis refused a write: maxmemory reached (%s)", exc)
        return redis_unavailable(exc)

    def not_replicated(exc: NotReplicated):
        log.warning("a write was not acknowledged: %s", exc)
        return answer(ServiceUnavailable(), str(exc), {"Retry-After": str(REDIS_DOWN_RETRY_AFTER_S)})

    def over_limit(exc: OverLimit):
        wait_s = max(1, math.ceil(exc.retry_after_s))
        message = f"over your submit limit (RATE_LIMIT, {exc.allowance.limit}); retry after {wait_s} seconds"
        return answer(TooManyRequests(), message, {**allowance_headers(exc.allowance), "Retry-After": str(wait_s)})

    def change_limit_exceeded(exc: RateLimitExceeded):
        # flask-limiter's 429 (cancels, redeliveries); it adds Retry-After and X-RateLimit-* itself.
        return answer(TooManyRequests(), f"{exc.description}; retry after {change_limit_wait_s()} seconds")

    def over_budget(exc: OverBudget):
        # Until the window ends: running jobs may release reservations sooner, but only the
        # window's end surely makes room.
        wait_s = max(1, math.ceil(exc.resets_at.timestamp() - time.time()))
        exc_data = {
            "type": "budget_exceeded",
            "limit": exc.budget.limit_micro_usd / 1_000_000,
            "window": exc.budget.window,
            "spent": exc.spent / 1_000_000,
            "reserved": exc.reserved / 1_000_000,
            "needed": exc.wanted / 1_000_000,
            "resets_at": exc.resets_at.isoformat().replace("+00:00", "Z"),
        }
        error = TooManyRequests()
        error.data = {"message": str(exc), "errors": exc_data, "headers": {"Retry-After": str(wait_s)}}  # type: ignore[attr-defined]
        return respond(error)

    def queue_full(exc: QueueFull):
        # Better than a backlog that grows without bound while the workers cannot keep up.
        return answer(ServiceUnavailable(), str(exc), {"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)})

    def too_large(exc: RequestEntityTooLarge):
        if getattr(exc, "data", {}).get("message"):  # a route's own 413, which names its bound
            return respond(exc)
        # werkzeug's, before the body is read: name the bound that was passed.
        limit = request.max_content_length
        if limit == app.config["MAX_CONTENT_LENGTH"]:
            message = f"the request body is larger than MAX_BODY_BYTES ({limit} bytes)"
        else:  # an upload's (service/api/documents.py)
            message = f"the request body is larger than {limit} bytes (MAX_DOCUMENT_BYTES, as sent)"
        return answer(RequestEntityTooLarge(), message)

    def too_many_deliveries(exc: TooManyPendingDeliveries):
        return answer(TooManyRequests(), str(exc), {"Retry-After": str(PENDING_DELIVERIES_RETRY_AFTER_S)})

    # A submit (job, batch, document or retry), the write of an Idempotency-Key, a webhook redelivery:
    app.register_error_handler(OverLimit, over_limit)
    app.register_error_handler(QueueFull, queue_full)
    app.register_error_handler(OverBudget, over_budget)
    app.register_error_handler(RateLimitExceeded, change_limit_exceeded)
    app.register_error_handler(IdempotencyConflict, lambda exc: answer(Conflict(), str(exc)))
    app.register_error_handler(DeliveryPending, lambda exc: answer(Conflict(), str(exc)))
    app.register_error_handler(TooManyPendingDeliveries, too_many_deliveries)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(RedisConnectionError, redis_unavailable)
    app.register_error_handler(RedisTimeoutError, redis_unavailable)
    # A failover under way: a primary just demoted (READONLY, when its retry also met one),
    # a replica cut off from its primary (MASTERDOWN), a write not on enough replicas yet.
    app.register_error_handler(ReadOnlyError, redis_unavailable)
    app.register_error_handler(MasterDownError, redis_unavailable)
    app.register_error_handler(NotReplicated, not_replicated)
    app.register_error_handler(RedisOutOfMemoryError, redis_full)
