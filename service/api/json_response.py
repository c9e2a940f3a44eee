"""Answering with a resource that is already in its documented shape."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flask import Response, request


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """`body` encoded once, as it is. The job and batch resources are built in one place
    each, already in the shape their schema documents: dumping them again through the
    schema (flask-smorest's `@blp.response` does, unless given a Response) costs a submit
    about a tenth of its CPU and changes nothing."""
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def json_response_unless_unchanged(body: Any) -> Response:
    """`body` with its ETag, or a bodiless `304` when the request's If-None-Match names it:
    a poll of an unchanged resource. (Werkzeug's `make_conditional` does this too, with
    ranges and dates the API never serves, at about a tenth of a poll's CPU.)"""
    response = json_response(body)
    response.add_etag()
    etag, _ = response.get_etag()
    if etag is not None and request.if_none_match.contains_weak(etag):
        response.status_code = 304  # werkzeug then sends no body and no entity headers
    return response
