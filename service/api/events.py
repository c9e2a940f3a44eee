"""GET /v1/jobs/{id}/events: the job's progress and end as Server-Sent Events.

Each open stream holds one gunicorn thread (gthread workers). A per-process cap below the
thread count (SSE_MAX_STREAMS < GUNICORN_THREADS) keeps threads free for other requests:
a stream past the cap is a 503 with Retry-After, not a stalled API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

from flask import Response, request, stream_with_context
from flask.views import MethodView
from flask_smorest import abort
from redis import Redis

from service.api.auth import current_client, require_client
from service.api.context import app_context
from service.api.jobs import own_job
from service.api.json_body import Blueprint
from service.jobs.events import Event, announce_end, is_event_id, read_events
from service.jobs.lookup import fetch_client_job
from service.jobs.resource import job_resource
from service.jobs.status import TERMINAL_STATUSES, public_status

blp = Blueprint("events", __name__, url_prefix="/v1/jobs", description="Follow a job as it runs.")
blp.before_request(require_client)

READ_BLOCK_MS = 1000  # below the API's Redis socket timeout (5 s), and the keep-alive floor
STREAM_FULL_RETRY_AFTER_S = 5


@blp.route("/<job_id>/events")
class JobEvents(MethodView):
    @blp.doc(
        parameters=[{"in": "header", "name": "Last-Event-ID", "schema": {"type": "string"}, "required": False,
                     "description": "Opaque: the `id` of an event this stream sent; any other value is a 422."}],
        responses={"200": {"description": "`progress` events, then one of `succeeded`, `failed`, `canceled` "
                           "(data: the job), then the stream closes.",
                           "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    )  # fmt: skip
    @blp.alt_response(503, description="This process serves as many streams as it may; retry shortly.")
    def get(self, job_id: str):
        """Stream the job's new text as it arrives, then its end; `Last-Event-ID` resumes."""
        own_job(job_id)  # 404 for a job that is not the caller's
        after = request.headers.get("Last-Event-ID", "0").strip() or "0"
        if after != "0" and not is_event_id(after):
            abort(
                422,
                message="Last-Event-ID is not an event id this API sent",
                errors={"headers": {"Last-Event-ID": [after]}},
            )
        ctx = app_context()
        if not ctx.stream_slots.acquire(blocking=False):
            abort(503, message="too many open event streams; retry shortly",
                  headers={"Retry-After": str(STREAM_FULL_RETRY_AFTER_S)})  # fmt: skip
        body = _stream(
            ctx.redis, current_client(), job_id, after, ctx.settings.sse_keepalive_s, ctx.stream_slots.release
        )
        return Response(
            stream_with_context(body),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def _stream(
    connection: Redis, client: str, job_id: str, after: str, keepalive_s: float, release: Callable[[], None]
) -> Iterator[str]:
    try:
        idle_since = time.monotonic()
        while True:
            events = read_events(connection, job_id, after, block_ms=READ_BLOCK_MS)
            for event in events:
                yield _format(event)
                if event.is_terminal:
                    return
                after = event.id
            if events:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= keepalive_s:
                # Also a safety net: a job that ended without its end being published (its
                # worker died at that very moment) gets it published now, webhook included.
                job = fetch_client_job(connection, client, job_id)
                if job is None:
                    return
                if public_status(job) in TERMINAL_STATUSES:
                    if announce_end(job):
                        continue  # the terminal event is in the stream now: read it next
                    # announced, but its events are gone (expired or trimmed): end anyway
                    yield _format(Event("", public_status(job), json.dumps(job_resource(job))))
                    return
                yield ": keep-alive\n\n"
                idle_since = time.monotonic()
    finally:
        release()


def _format(event: Event) -> str:
    lines = [f"id: {event.id}"] if event.id else []
    return "\n".join([*lines, f"event: {event.type}", f"data: {event.data}", "", ""])
