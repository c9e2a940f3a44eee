"""The API's part in the callers' traces and bug reports (service/tracing.py,
service/bug_reports.py); neither adds a hook when it is off.

Traces: a server span per request, continuing the caller's `traceparent` and current while
the request is served, so a submit stores its context in the job it creates. It names the
method, the route (not the path's values) and the status; no header or body. A read
(`GET`, `HEAD`: the polls, the event streams) is traced only when its caller sends a trace
context: untraced, each poll would be a trace of one span, and its export would cost about
as much CPU as the poll itself (bench/RESULTS.md).

Bugs: an exception no error handler answers (the client gets the one-shape `500`) is
reported, tagged with the client, the job id of the route if it has one, and the route.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, got_request_exception, request
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from service import bug_reports, tracing


def init_telemetry(app: Flask) -> None:
    """Before any other hook (the limits' answers are spans too)."""
    if tracing.ON:
        app.before_request(_start_span)
        app.after_request(_note_status)
        app.teardown_request(_end_span)
    if bug_reports.ON:
        got_request_exception.connect(_report_bug, app, weak=False)


def _route() -> str:
    return request.url_rule.rule if request.url_rule is not None else "(no route)"


READS = frozenset({"GET", "HEAD", "OPTIONS"})


def _start_span() -> None:
    if request.method in READS and not any(name in request.headers for name in tracing.propagated_headers()):
        return
    route = _route()
    span = tracing.TRACER.start_span(
        f"{request.method} {route}",
        context=tracing.context_of(request.headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": route, "url.scheme": request.scheme},
    )
    g.trace_span = span
    g.trace_token = context.attach(trace.set_span_in_context(span))


def _note_status(response: Response) -> Response:
    span = g.get("trace_span")
    if span is not None:
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            span.set_status(Status(StatusCode.ERROR))
    return response


def _end_span(exc: BaseException | None) -> None:
    span = g.pop("trace_span", None)
    if span is None:
        return
    if exc is not None:
        tracing.mark_failed(span, type(exc).__name__)
    span.end()
    context.detach(g.pop("trace_token"))


def _report_bug(_app: Flask, exception: BaseException, **_extra: Any) -> None:
    job_id = (request.view_args or {}).get("job_id")
    bug_reports.report_bug(exception, client=g.get("client"), job_id=job_id, route=_route(), method=request.method)
