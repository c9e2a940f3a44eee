"""The errors the client raises: one class per kind of answer, all `APIError`."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class APIError(Exception):
    """An error answer from the API (or, for `APIConnectionError`, no answer at all).

    `status_code` is the HTTP status, `code`/`message`/`errors` come from the body
    (`{"code", "status", "message", "errors"?}`), `retry_after` is `Retry-After` in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: int | None = None,
        errors: dict[str, Any] | None = None,
        retry_after: float | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code if code is not None else status_code
        self.errors = errors
        self.retry_after = retry_after
        self.response = response

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code is not None else self.message


class APIConnectionError(APIError):
    """The API could not be reached, or the connection broke (no HTTP status). `sent` is
    False when the request certainly never reached the server (so resending it is safe)."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class APITimeoutError(APIConnectionError):
    """No answer within the timeout."""


class BadRequestError(APIError):
    """400"""


class AuthenticationError(APIError):
    """401: missing or unknown API key."""


class NotFoundError(APIError):
    """404: no such job or batch (or another client's)."""


class ConflictError(APIError):
    """409: the job is in the wrong state, or an Idempotency-Key was reused with another body."""


class PayloadTooLargeError(APIError):
    """413"""


class ValidationError(APIError):
    """422: the request was refused; `errors` says which fields and why."""


class RateLimitError(APIError):
    """429: see `retry_after`."""


class BudgetExceededError(RateLimitError):
    """429 with `errors["type"] == "budget_exceeded"`: the job's worst case does not fit in
    what the client's spend budget has left; `retry_after` is when its window ends, `errors`
    holds `limit`, `window`, `spent`, `reserved`, `needed`, `resets_at`."""


class ServerError(APIError):
    """5xx"""


class ServiceUnavailableError(ServerError):
    """503: the service (its job store) is unavailable, or a queue is full; see `retry_after`."""


_ERROR_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


class WaitTimeout(Exception):
    """`wait()` gave up; `job` is the last job (or batch) seen, None if none was read."""

    def __init__(self, message: str, job: Any = None) -> None:
        super().__init__(message)
        self.job = job


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> APIError:
    """The typed `APIError` for an error response, whatever its body (JSON or not). The
    body must have been read (a streamed response: `read()` it first)."""
    status = response.status_code
    cls = _ERROR_CLASSES.get(status) or (ServerError if status >= 500 else APIError)
    code, message, errors = status, None, None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("code"), int):
            code = body["code"]
        if body.get("message") is not None:
            message = str(body["message"])
        if isinstance(body.get("errors"), dict):
            errors = body["errors"]
            if status == 429 and errors.get("type") == "budget_exceeded":
                cls = BudgetExceededError
    if message is None:
        text = (response.text or "").strip()
        if text and body is None:
            message = text if len(text) <= 300 else text[:300] + "…"
        else:
            message = response.reason_phrase or f"HTTP {status}"
    return cls(
        message,
        status_code=status,
        code=code,
        errors=errors,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        response=response,
    )


def connection_error(exc: httpx.TransportError, base_url: str) -> APIConnectionError:
    """The client's error for an httpx transport error: a timeout, or a failure to connect
    (never sent) or mid-exchange (maybe acted on)."""
    if isinstance(exc, httpx.TimeoutException):
        sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
        error: APIConnectionError = APITimeoutError(f"no answer from {base_url} in time: {exc!r}", sent=sent)
    else:
        sent = not isinstance(exc, httpx.ConnectError)
        error = APIConnectionError(f"cannot reach {base_url}: {exc}", sent=sent)
    return error
