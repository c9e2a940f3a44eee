"""Wire-format helpers: error bodies, SSE framing, request validation, fake text.

Everything here mirrors the public Anthropic Messages API closely enough that
the official SDK parses it unchanged (and maps errors to its exception classes).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

ERROR_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
STATUS_BY_ERROR_TYPE = {v: k for k, v in ERROR_TYPE_BY_STATUS.items()}

DEFAULT_ERROR_MESSAGES = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}
SPEND_LIMIT_MESSAGE = "This request would exceed your organization's spend limit."
# SDK >= 2.x maps (429, details.error_code) to EnforcedSpendLimitReachedError,
# a RateLimitError subclass, so clients can branch on a stable code.
SPEND_LIMIT_ERROR_CODE = "enforced_spend_limit_reached"

# Output "tokens" are whole words so that counting them is trivial in tests.
# fmt: off
WORDS = (
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
    "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim", "ad", "minim", "veniam",
    "quis", "nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip", "ex", "ea", "commodo", "consequat",
    "duis", "aute", "irure", "in", "reprehenderit", "voluptate", "velit", "esse", "cillum", "fugiat", "nulla",
    "pariatur", "excepteur", "sint", "occaecat", "cupidatat", "non", "proident",
)
# fmt: on


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def error_body(error_type: str, message: str | None = None, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "type": error_type,
        "message": message or DEFAULT_ERROR_MESSAGES[error_type],
    }
    if error_code:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error}


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event frame, exactly as the real API frames it."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def generate_tokens(n: int) -> list[str]:
    """Deterministic output: n words, each with a trailing space, one per token."""
    return [WORDS[i % len(WORDS)] + " " for i in range(n)]


def message_skeleton(msg_id: str, model: str) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }


class InvalidRequest(ValueError):
    """Request body failed validation; becomes a 400 invalid_request_error."""


def validate_request(body: Any) -> dict[str, Any]:
    """Validate a Messages request body's top-level fields (content.py reads its blocks), and
    return it. Raises InvalidRequest with a message in the style of the real API ("field: problem").
    """
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required (non-empty string)")
    max_tokens = body.get("max_tokens")
    # bool is an int subclass; the real API rejects true/false here too.
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Field required (integer >= 1)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: Field required (non-empty list)")
    if "temperature" in body:
        temperature = body["temperature"]
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1:
            raise InvalidRequest("temperature: Input should be a number between 0 and 1")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream: Input should be a valid boolean")
    sequences = body.get("stop_sequences", [])
    if not isinstance(sequences, list) or not all(isinstance(seq, str) for seq in sequences):
        raise InvalidRequest("stop_sequences: Input should be a list of strings")
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise InvalidRequest("thinking.budget_tokens: Input should be greater than or equal to 1024")
        if budget >= max_tokens:
            raise InvalidRequest("`max_tokens` must be greater than `thinking.budget_tokens`")
    return body
