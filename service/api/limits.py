"""Per-client submit limits (flask-limiter, counted in Redis so every API process shares
them) and back-pressure on deep queues."""

from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_smorest import abort
from rq import Queue

from service.api.context import app_context
from service.config import Settings

QUEUE_FULL_RETRY_AFTER_S = 30


def rate_limit_key() -> str:
    """The client's name, so one client's burst never spends another's allowance. The
    submit limit is checked after auth; flask-limiter's own early pass, before auth,
    sees only the address."""
    client = g.get("client")
    return f"client:{client}" if client else f"address:{get_remote_address()}"


limiter = Limiter(key_func=rate_limit_key)


@limiter.request_filter
def _reads_are_not_limited() -> bool:
    """Every limit is on a route that changes something; a read (a poll, above all) skips
    flask-limiter's per-request evaluation altogether (~10 % of a GET's CPU)."""
    return request.method in ("GET", "HEAD", "OPTIONS")


def init_limits(app: Flask, settings: Settings) -> None:
    app.config.update(
        RATELIMIT_STORAGE_URI=settings.redis_url,
        RATELIMIT_KEY_PREFIX="llmjobs:ratelimit",
        RATELIMIT_STRATEGY="moving-window",
        RATELIMIT_HEADERS_ENABLED=True,  # X-RateLimit-*, and Retry-After on a 429
        # Redis away: let the request through; the submit itself then answers 503.
        RATELIMIT_SWALLOW_ERRORS=True,
    )
    limiter.init_app(app)


def submit_limit() -> str:
    """The caller's submit limit: its override (RATE_LIMIT_OVERRIDES), else RATE_LIMIT.

    flask-limiter also reads it in its early pass, before auth, only to see the limit's
    options (nothing is counted there): no client is known yet, so RATE_LIMIT it is."""
    settings = app_context().settings
    return settings.rate_limit_overrides.get(g.get("client"), settings.rate_limit)


# The decorator of every route that starts LLM work: a job, a batch, a retry. They share
# one count per client, so a retry loop spends the same allowance as submits.
limit_submits = limiter.shared_limit(
    submit_limit, scope="submits", error_message="over your submit limit (RATE_LIMIT); retry after Retry-After seconds"
)


def change_limit() -> str:
    return app_context().settings.change_rate_limit


# The decorator of every other route that changes something: cancel, webhook redelivery.
limit_changes = limiter.shared_limit(
    change_limit, scope="changes",
    error_message="over your limit on cancels and redeliveries (CHANGE_RATE_LIMIT); retry after Retry-After seconds",
)  # fmt: skip


def refuse_if_full(queue: Queue) -> None:
    """503 with Retry-After when the queue holds QUEUE_MAX_DEPTH jobs already: better
    than a backlog that grows without bound while the workers cannot keep up."""
    limit = app_context().settings.queue_max_depth
    if limit and queue.count >= limit:
        abort(
            503,
            message=f"the {queue.name} queue is full ({limit} jobs waiting); retry later",
            headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)},
        )
