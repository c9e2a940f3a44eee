"""service/llm/errors.py: every failure sorted into retryable or final, with the wait asked.

The exceptions are the SDK's own classes built as the SDK builds them from a response (the
HTTP round trip itself is tests/test_llm_client.py's)."""

from __future__ import annotations

import email.utils
import time

import anthropic
import httpx2
import pytest

from service.llm.errors import LLMError, classify

REQUEST = httpx2.Request("POST", "https://api.anthropic.test/v1/messages")


def status_error(
    status: int, error_type: str | None = None, message: str = "it failed", *, error_code: str | None = None, **headers
) -> anthropic.APIStatusError:
    error: dict = {"message": message}
    if error_type is not None:
        error["type"] = error_type
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    response = httpx2.Response(status, headers={k.replace("_", "-"): v for k, v in headers.items()}, request=REQUEST)
    return anthropic.APIStatusError(f"Error code: {status}", response=response, body={"type": "error", "error": error})


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (400, "invalid_request_error", False),
        (401, "authentication_error", False),
        (403, "permission_error", False),
        (404, "not_found_error", False),
        (408, "timeout_error", True),
        (409, "conflict_error", True),
        (413, "request_too_large", False),
        (422, "invalid_request_error", False),
        (429, "rate_limit_error", True),
        (500, "api_error", True),
        (501, "api_error", True),  # any 5xx, listed or not
        (529, "overloaded_error", True),
        (599, "api_error", True),
    ],
)
def test_a_status_is_retryable_when_waiting_can_help(status, error_type, retryable):
    error = classify(status_error(status, error_type, "the provider's words"))
    assert (error.type, error.retryable, error.status_code) == (error_type, retryable, status)
    assert error.message == "the provider's words"


def test_a_body_without_a_type_or_message_still_says_what_happened():
    response = httpx2.Response(502, request=REQUEST)
    error = classify(anthropic.APIStatusError("Error code: 502 - bad gateway", response=response, body="<html>"))
    assert (error.type, error.message, error.retryable) == ("http_502", "Error code: 502 - bad gateway", True)


@pytest.mark.parametrize(
    ("error_type", "retryable"),
    [("overloaded_error", True), ("api_error", True), ("rate_limit_error", True),
     ("invalid_request_error", False), ("permission_error", False)],
)  # fmt: skip
def test_an_error_event_mid_stream_is_judged_by_its_type(error_type, retryable):
    error = classify(status_error(200, error_type, retry_after="3"))
    assert (error.type, error.retryable, error.status_code) == (error_type, retryable, None)
    assert error.retry_after_s == (3.0 if retryable else None)


@pytest.mark.parametrize(
    ("message", "error_code"),
    [("You have reached your spend limit.", None), ("Monthly usage limit reached", None),
     ("over quota", "workspace_spend_limit_exceeded")],
)  # fmt: skip
def test_a_spend_limit_429_is_final(message, error_code):
    error = classify(status_error(429, "rate_limit_error", message, error_code=error_code, retry_after="60"))
    assert (error.retryable, error.status_code, error.message) == (False, 429, message)
    assert error.retry_after_s is None  # waiting does not lift it: no wait to report


def test_retry_after_ms_wins_over_retry_after_and_both_are_bounded():
    assert classify(status_error(429, "rate_limit_error", retry_after_ms="1500", retry_after="9")).retry_after_s == 1.5
    assert classify(status_error(529, "overloaded_error", retry_after="7")).retry_after_s == 7.0
    assert classify(status_error(503, "api_error", retry_after="1e400")).retry_after_s == 86400.0
    # an unreadable retry-after-ms falls back to retry-after
    assert classify(status_error(503, "api_error", retry_after_ms="soon", retry_after="4")).retry_after_s == 4.0
    assert classify(status_error(503, "api_error")).retry_after_s is None


def test_retry_after_as_an_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert classify(status_error(429, "rate_limit_error", retry_after=when)).retry_after_s == pytest.approx(30, abs=2)


def test_a_final_error_reports_no_wait_even_when_the_provider_sent_one():
    assert classify(status_error(400, "invalid_request_error", retry_after="5")).retry_after_s is None


def test_transport_failures_are_retryable():
    assert classify(anthropic.APITimeoutError(REQUEST)).type == "timeout"
    assert classify(httpx2.ReadTimeout("slow", request=REQUEST)).type == "timeout"
    connection = classify(anthropic.APIConnectionError(message="refused", request=REQUEST))
    assert (connection.type, connection.retryable, connection.message) == (
        "connection_error", True, "connection to the provider failed: refused")  # fmt: skip
    assert classify(httpx2.RemoteProtocolError("peer closed", request=REQUEST)).type == "connection_error"
    for exc in (anthropic.APITimeoutError(REQUEST), httpx2.ConnectError("no route", request=REQUEST)):
        error = classify(exc)
        assert error.retryable and error.status_code is None and error.retry_after_s is None


def test_anything_else_is_a_final_api_error_with_a_message():
    assert classify(ValueError("bad model")) == LLMError("api_error", "bad model", retryable=False)
    assert classify(RuntimeError()).message == "RuntimeError"


def test_an_error_reads_as_its_type_and_message():
    error = classify(status_error(529, "overloaded_error", "Overloaded", retry_after="2"))
    assert str(error) == "overloaded_error: Overloaded"
