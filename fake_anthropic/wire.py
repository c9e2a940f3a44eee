"""Wire-format helpers: error bodies, SSE framing, request validation, fake text.

Everything here mirrors the public Anthropic Messages API closely enough that
the official SDK parses it unchanged (and maps errors to its exception classes).
"""

from __future__ import annotations

import base64
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


DOCUMENT_MEDIA_TYPES = ("application/pdf",)


def _block_texts(value: Any, where: str) -> list[str]:
    """Texts from a string or a list of text blocks (and, in messages, base64 PDF
    `document` blocks, which hold no text the fake reads)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise InvalidRequest(f"{where}: Input should be a valid string or a list of content blocks")
    texts = []
    for i, block in enumerate(value):
        if isinstance(block, dict) and block.get("type") == "document" and where.startswith("messages"):
            _check_document(block, f"{where}.{i}")
            continue
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest(f"{where}.{i}: only content blocks of type 'text' or 'document' are supported")
        if not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}.{i}.text: Field required (must be a string)")
        texts.append(block["text"])
    return texts


def _check_document(block: dict[str, Any], where: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise InvalidRequest(f"{where}.source: the fake reads only base64 sources")
    if source.get("media_type") not in DOCUMENT_MEDIA_TYPES:
        raise InvalidRequest(f"{where}.source.media_type: Input should be one of {DOCUMENT_MEDIA_TYPES}")
    try:
        decoded = base64.b64decode(source.get("data") or "", validate=True)
    except (ValueError, TypeError):
        raise InvalidRequest(f"{where}.source.data: not valid base64") from None
    if not decoded.startswith(b"%PDF-"):
        raise InvalidRequest(f"{where}.source.data: the PDF specified was not valid")


def document_bytes(body: dict[str, Any]) -> int:
    """The size of the documents a valid request carries (they count as input tokens)."""
    return sum(
        len(block["source"]["data"]) * 3 // 4
        for message in body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "document"
    )


def validate_request(body: Any) -> tuple[list[str], str]:
    """Validate a Messages request body.

    Returns (every prompt text, for token counting; the last user message's
    text, where directives live). Raises InvalidRequest with a message in the
    style of the real API ("field: problem").
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

    texts: list[str] = []
    if "system" in body:
        texts += _block_texts(body["system"], "system")
    last_user_text = ""
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages.{i}: Input should be an object")
        if message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise InvalidRequest(f"messages.{i}.content: Field required")
        message_texts = _block_texts(message["content"], f"messages.{i}.content")
        texts += message_texts
        if message["role"] == "user":
            last_user_text = "\n".join(message_texts)

    if "temperature" in body:
        temperature = body["temperature"]
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1:
            raise InvalidRequest("temperature: Input should be a number between 0 and 1")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream: Input should be a valid boolean")
    return texts, last_user_text
