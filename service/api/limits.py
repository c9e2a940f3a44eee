"""Per-client limits, counted in Redis so every API process shares them, and back-pressure
on deep queues.

Submits (jobs, batches, retries) are admitted by `service.jobs.storage.admission`: the client's limit,
the queue's depth and the write in one Redis call. flask-limiter limits the rest that costs:
cancels and webhook redeliveries (CHANGE_RATE_LIMIT), listing (LIST_RATE_LIMIT), the bytes
of document uploads (UPLOAD_RATE_LIMIT) and wrong operator passwords (OPERATOR_LOGIN_RATE_LIMIT)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import limits
from flask import Flask, Response, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from redis import Redis
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

from service.api.auth import current_client
from service.api.context import app_context
from service.config import Settings
from service.jobs.storage.admission import Allowance, Gate, parse_submit_limits
from service.jobs.storage.keys import FLASK_LIMITER_PREFIX


def rate_limit_key() -> str:
    """The client's name, so one client's burst never spends another's allowance. The
    limits are checked after auth; flask-limiter's own early pass, before auth, sees only
    the address."""
    client = g.get("client")
    return f"client:{client}" if client else f"address:{get_remote_address()}"


limiter = Limiter(key_func=rate_limit_key)


# The routes flask-limiter limits: POST .../cancel and POST .../webhook/redeliver, the
# document upload, and the listing.
CHANGE_ROUTE_ENDINGS = ("/cancel", "/redeliver")
UPLOAD_PATH, LIST_PATH = "/v1/documents", "/v1/jobs"
MIB = 1024 * 1024


@limiter.request_filter
def _not_limited_here() -> bool:
    """Every other request (a poll, a submit: see admission) skips flask-limiter's
    per-request evaluation altogether (~10 % of a GET's CPU)."""
    if request.method == "POST":
        return not (request.path.endswith(CHANGE_ROUTE_ENDINGS) or request.path == UPLOAD_PATH)
    return request.path != LIST_PATH


def init_limits(app: Flask, settings: Settings, redis: Redis) -> None:
    app.config.update(
        # The API's own connection pool: the same Redis (the primary Sentinel names) and
        # the same bounded timeouts; the URI only picks flask-limiter's Redis storage.
        RATELIMIT_STORAGE_URI="redis://",
        RATELIMIT_STORAGE_OPTIONS={"connection_pool": redis.connection_pool},
        RATELIMIT_KEY_PREFIX=FLASK_LIMITER_PREFIX,
        RATELIMIT_STRATEGY="moving-window",
        RATELIMIT_HEADERS_ENABLED=True,  # X-RateLimit-*, and Retry-After on a 429
        # Redis away: let the request through; the submit itself then answers 503.
        RATELIMIT_SWALLOW_ERRORS=True,
    )
    # Registered before flask-limiter's own hook, so it runs after it (Flask runs them last
    # first): flask-limiter puts a Retry-After on every limited response, a 2xx included.
    app.after_request(_no_retry_after_on_success)
    limiter.init_app(app)


def _no_retry_after_on_success(response: Response) -> Response:
    """A 2xx has nothing to retry."""
    if response.status_code < 300:
        response.headers.pop("Retry-After", None)
    return response


def change_limit_wait_s() -> int:
    """Seconds until the caller's exceeded CHANGE_RATE_LIMIT lets a request through, counted
    as flask-limiter counts its Retry-After."""
    current = limiter.current_limit
    return max(1, int(current.reset_at - time.time())) if current else 1


def submit_gate(queue_names: Iterable[str]) -> Gate:
    """What a submit by the caller must pass: its limit (its RATE_LIMIT_OVERRIDES entry, else
    RATE_LIMIT), QUEUE_MAX_DEPTH on each queue it fills, and its CLIENT_BUDGETS entry. Jobs, batches and retries share
    one count per client, so a retry loop spends the same allowance as submits."""
    settings = app_context().settings
    client = current_client()
    limit = settings.rate_limit_overrides.get(client, settings.rate_limit)
    caps = tuple((name, settings.queue_max_depth) for name in dict.fromkeys(queue_names))
    return Gate(client, parse_submit_limits(limit), caps, settings.client_budgets.get(client))


def allowance_headers(allowance: Allowance | None) -> dict[str, str]:
    """`X-RateLimit-*` as flask-limiter writes them (the reset is epoch seconds)."""
    if allowance is None:
        return {}
    return {
        "X-RateLimit-Limit": str(allowance.limit),
        "X-RateLimit-Remaining": str(allowance.remaining),
        "X-RateLimit-Reset": str(int(allowance.reset_at)),
    }


def change_limit() -> str:
    return app_context().settings.change_rate_limit


# The decorator of every route that changes a job but starts no LLM work (CHANGE_ROUTE_ENDINGS).
limit_changes = limiter.shared_limit(
    change_limit, scope="changes",
    error_message="over your limit on cancels and redeliveries (CHANGE_RATE_LIMIT)",
)  # fmt: skip

# A page of GET /v1/jobs reads up to a hundred jobs (and skips up to a thousand with a filter).
limit_listing = limiter.shared_limit(
    lambda: app_context().settings.list_rate_limit, scope="listing",
    error_message="over your limit on listing jobs (LIST_RATE_LIMIT)",
)  # fmt: skip


def upload_cost_mib() -> int:
    """What an upload spends of UPLOAD_RATE_LIMIT: its body's declared size in MiB, rounded
    up (a body without a length counts as the largest one allowed)."""
    size = request.content_length if request.content_length is not None else request.max_content_length
    return max(1, math.ceil((size or 0) / MIB))


# Counted before the body is read: a 20 MiB upload spends 20 of the allowance.
limit_uploads = limiter.shared_limit(
    lambda: app_context().settings.upload_rate_limit, scope="uploads", cost=upload_cost_mib,
    error_message="over your limit on document uploads (UPLOAD_RATE_LIMIT, MiB of request bodies)",
)  # fmt: skip


def check_operator_login_allowance(limit: str) -> None:
    """A 429 once this address has sent `limit` (OPERATOR_LOGIN_RATE_LIMIT) wrong operator passwords."""
    item, address = limits.parse(limit), get_remote_address()
    if not limiter.limiter.test(item, FLASK_LIMITER_PREFIX, "operator-login", address):
        reset_at, _ = limiter.limiter.get_window_stats(item, FLASK_LIMITER_PREFIX, "operator-login", address)
        wait_s = max(1, math.ceil(reset_at - time.time()))
        abort(
            429,
            message=f"too many wrong operator logins from this address (OPERATOR_LOGIN_RATE_LIMIT); "
            f"retry after {wait_s} seconds",
            headers={"Retry-After": str(wait_s)},
        )


def count_wrong_operator_login(limit: str) -> None:
    limiter.limiter.hit(limits.parse(limit), FLASK_LIMITER_PREFIX, "operator-login", get_remote_address())
