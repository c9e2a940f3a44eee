"""Every way an LLM call can fail, sorted once into retryable or final.

The job layer decides when to retry; this module only says whether it is worth it and
how long the provider asked us to wait.
"""

from __future__ import annotations

from dataclasses import dataclass

import anthropic
import httpx2

from service.retry_after import parse_retry_after

# Provider statuses worth another attempt: request timeout, conflict, rate limit,
# server errors and "overloaded" (529).
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# Error types an SSE `error` event can carry mid-stream (HTTP status 200) that are transient.
RETRYABLE_STREAM_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error"})


@dataclass
class LLMError(Exception):
    """A failed LLM call, as a job records it."""

    type: str
    message: str
    retryable: bool
    status_code: int | None = None
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


def classify(exc: Exception) -> LLMError:
    """Translate an SDK or transport exception into an LLMError."""
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return LLMError("timeout", "the provider did not answer in time", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return LLMError("connection_error", f"connection to the provider failed: {exc}", retryable=True)
    if isinstance(exc, anthropic.APIStatusError):
        return _classify_status(exc)
    return LLMError("api_error", str(exc) or type(exc).__name__, retryable=False)


def _classify_status(exc: anthropic.APIStatusError) -> LLMError:
    status = exc.status_code
    error_type = exc.type or f"http_{status}"
    message = exc.api_message or str(exc)
    if status == 200:  # an `error` event in the middle of a stream
        retryable = error_type in RETRYABLE_STREAM_ERROR_TYPES
    elif status == 429 and _is_spend_limit(exc, message):
        # Waiting does not lift a spend limit: fail now with the provider's words.
        retryable = False
    else:
        retryable = status in RETRYABLE_STATUSES or status >= 500
    return LLMError(
        error_type,
        message,
        retryable=retryable,
        status_code=None if status == 200 else status,
        retry_after_s=_retry_after_s(exc.response.headers) if retryable else None,
    )


def _is_spend_limit(exc: anthropic.APIStatusError, message: str) -> bool:
    code = (exc.error_code or "").lower()
    text = message.lower()
    return "spend" in code or "spend limit" in text or "usage limit" in text


def _retry_after_s(headers: httpx2.Headers) -> float | None:
    """`retry-after-ms`, `retry-after` in seconds, or `retry-after` as an HTTP date."""
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return parse_retry_after(str(float(millis) / 1000))  # bounded like retry-after
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))
