"""The one error shape every error answer of the API has (docs/api.md)."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

ERROR_KEYS = {"code", "status", "message", "errors"}


def assert_error_shape(response, code: int | None = None) -> dict[str, Any]:
    """The one error shape (docs/api.md), for Flask's test responses and schemathesis' alike
    (schemathesis lowercases header names and gives each a list of values)."""
    headers = {name.lower(): value for name, value in response.headers.items()}
    content_type = headers.get("content-type", "")
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    text = response.text
    if code is not None:
        assert response.status_code == code, text
    assert content_type.startswith("application/json"), text
    body = json.loads(text)
    assert isinstance(body, dict) and set(body) <= ERROR_KEYS, body
    assert body["code"] == response.status_code, body
    assert body["status"] == HTTPStatus(response.status_code).phrase, body
    assert isinstance(body["message"], str) and body["message"].strip(), body
    return body
