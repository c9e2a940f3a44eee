"""The one JSON parser for request bodies: every `@blp.arguments(...)` body goes through it.

Python's `json` accepts what RFC 8259 leaves undefined and fails in ways that are not
`JSONDecodeError` (which webargs turns into a 400): an integer of more than 4,300 digits
is a `ValueError`, deep nesting a `RecursionError`, and a lone UTF-16 surrogate
(`"\\ud800"`) parses into a `str` that cannot be encoded again (the Idempotency-Key
fingerprint, the provider call). Such a body is refused here, as a 400, for every route.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import flask_smorest
from flask import Request
from marshmallow import Schema
from webargs import core
from webargs.flaskparser import (
    FlaskParser,
    abort,  # what flask_smorest.abort is, with its NoReturn type
    is_json_request,
)


class InvalidJsonBody(ValueError):
    """The body is not the strict JSON (RFC 8259, I-JSON strings) this API reads."""


def parse_json_body(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, integers within Python's digit limit,
    nesting within the recursion limit, strings of Unicode characters only."""
    try:
        text = raw.decode("utf-8")
        data = json.loads(text, parse_constant=_refuse_constant)
    except InvalidJsonBody:
        raise
    except UnicodeDecodeError as exc:
        raise InvalidJsonBody(f"the body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidJsonBody(f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise InvalidJsonBody("the body is nested too deeply") from None
    except ValueError:  # only int() refuses a number json's scanner accepted
        limit = sys.get_int_max_str_digits()
        raise InvalidJsonBody(f"a number in the body has more than {limit} digits") from None
    # json joins an escaped surrogate pair into one character; one left alone stays a surrogate.
    if "\\u" in text and _has_lone_surrogate(data):
        raise InvalidJsonBody("the body holds a lone UTF-16 surrogate (like \\ud800), which is not a character")
    return data


def _refuse_constant(name: str) -> NoReturn:
    raise InvalidJsonBody(f"the body is not JSON: {name} is not a JSON value")


def _has_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, reading bodies with `parse_json_body`."""

    def load_json(self, req: Request, schema: Schema) -> Any:
        if not is_json_request(req):
            return core.missing
        raw = req.get_data(cache=True)
        if not raw:
            return core.missing  # as webargs: a required body then fails validation
        try:
            return parse_json_body(raw)
        except InvalidJsonBody as exc:
            abort(400, message=str(exc), errors={"json": [str(exc)]})


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the strict body parser; every API blueprint is one."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def arguments(self, schema: type[Schema] | Schema, **kwargs: Any) -> Any:
        # webargs builds a schema given as a class anew for every request (a deep copy of
        # every field: about a tenth of a submit's CPU); an instance is built once.
        return super().arguments(schema() if isinstance(schema, type) else schema, **kwargs)
