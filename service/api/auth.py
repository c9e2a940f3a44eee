"""Bearer API keys: each key names a client, and a client sees only its own jobs."""

from __future__ import annotations

import hmac

from flask import g, request
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

from service.api.context import app_context

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="llm-jobs"'}


def client_for_key(presented: str, keys: dict[str, str]) -> str | None:
    """The client whose key matches; every key is compared, in constant time, so
    timing says nothing about which key (or how much of one) was close."""
    match = None
    for key, client in keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            match = client
    return match


def require_client() -> None:
    """before_request hook: sets `g.client` or answers 401."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, message="send 'Authorization: Bearer <API key>'", headers=CHALLENGE)
    client = client_for_key(token.strip(), app_context().settings.api_keys)
    if client is None:
        abort(401, message="the API key is not valid", headers=CHALLENGE)
    g.client = client


def current_client() -> str:
    return g.client
