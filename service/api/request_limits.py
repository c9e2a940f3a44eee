"""Bounds on the request line and headers, answered by the app in the JSON error shape.

The server (granian) refuses what is past its own limits itself, with a bare status. Its
limits are far above these, so a request between the two gets a JSON 414/431 from here.
"""

from __future__ import annotations

from flask import Flask, request
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

MAX_REQUEST_TARGET_BYTES = 4096  # path and query
MAX_HEADER_FIELD_BYTES = 8190  # name, ": " and value
MAX_HEADER_FIELDS = 64  # distinct names (WSGI joins repeats); granian's limit is 100 lines


def check_request_size() -> None:
    target = request.environ.get("RAW_URI") or request.full_path
    if len(target.encode("latin-1", "replace")) > MAX_REQUEST_TARGET_BYTES:
        abort(414, message=f"the request target (path and query) is longer than {MAX_REQUEST_TARGET_BYTES} bytes")
    headers = list(request.headers.items())
    if len(headers) > MAX_HEADER_FIELDS:
        abort(431, message=f"more than {MAX_HEADER_FIELDS} header fields")
    for name, value in headers:
        if len(name) + 2 + len(value) > MAX_HEADER_FIELD_BYTES:
            abort(431, message=f"the {name} header is longer than {MAX_HEADER_FIELD_BYTES} bytes")


def init_request_limits(app: Flask) -> None:
    # First of the app's hooks: before authentication and rate limits look at the request.
    app.before_request_funcs.setdefault(None, []).insert(0, check_request_size)
