"""Structured outputs: the JSON schema a request asks its reply to follow, and the reply
checked against it (the provider constrains the reply, but a refusal, a reply cut at
`max_tokens` or a model that does not constrain can still answer something else)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema_rs

MESSAGE_LIMIT = 300


class InvalidOutput(ValueError):
    """A reply that is not the JSON its request asked for."""


def requested_schema(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The schema of `output_config.format` when it is a `json_schema` (else None)."""
    output_format = (params.get("output_config") or {}).get("format") or {}
    if output_format.get("type") != "json_schema":
        return None
    return output_format.get("schema")


def parse_output(text: str, schema: dict[str, Any], stop_reason: str | None) -> Any:
    """The reply's JSON, checked against `schema`; raises InvalidOutput saying what is wrong."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidOutput(f"the reply is not JSON ({exc}; stop_reason {stop_reason})") from None
    try:
        jsonschema_rs.validate(schema, value)
    except jsonschema_rs.ValidationError as exc:
        where = ".".join(map(str, exc.instance_path)) or "the reply"
        raise InvalidOutput(f"{where} does not match the requested schema: {exc.message[:MESSAGE_LIMIT]}") from None
    except ValueError as exc:  # the schema itself cannot be compiled
        raise InvalidOutput(f"the requested schema cannot be checked: {str(exc)[:MESSAGE_LIMIT]}") from None
    return value
