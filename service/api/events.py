"""GET /v1/jobs/{id}/events: the job's progress and end as Server-Sent Events.

Each open stream holds one of the API process's threads. A per-process cap below the
thread count (SSE_MAX_STREAMS < API_THREADS) keeps threads free for other requests:
a stream past the cap is a 503 with Retry-After, not a stalled API. One client may hold
SSE_MAX_STREAMS_PER_CLIENT streams across all processes (more is a 429), so it cannot
take every slot; and a stream ends after SSE_MAX_DURATION_S, for the client to resume
with Last-Event-ID, so no slot is held for good.

A stream's slot is given back when the response is closed, which the WSGI server does
on every path: a stream that ended, failed or lost its client, and one whose body was
never read at all (HEAD).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

from flask import Response, request, stream_with_context
from flask.views import MethodView
from redis import Redis
from redis.exceptions import RedisError
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

from service.api.auth import current_client, require_client
from service.api.context import app_context
from service.api.jobs import own_job
from service.api.json_body import Blueprint
from service.jobs.push.events import Event, announce_end, is_event_id, read_events
from service.jobs.push.stream_claims import claim_stream, release_stream
from service.jobs.storage.lookup import fetch_client_job
from service.jobs.storage.resource import job_resource
from service.jobs.storage.status import TERMINAL_STATUSES, public_status

log = logging.getLogger(__name__)

blp = Blueprint("events", __name__, url_prefix="/v1/jobs", description="Follow a job as it runs.")
blp.before_request(require_client)

READ_BLOCK_MS = 1000  # below the API's Redis socket timeout (2 s, storage/connection.py), and the keep-alive floor
# Set when this API process is stopping (serve.end_streams_on_stop, on SIGTERM): every open stream
# ends within READ_BLOCK_MS, for its client to resume elsewhere with Last-Event-ID.
STOPPING = threading.Event()
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
    @blp.alt_response(429, description="You hold SSE_MAX_STREAMS_PER_CLIENT open streams already.")
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
        ctx, client = app_context(), current_client()
        slot = StreamSlot.take(client)
        body = _stream(ctx.redis, client, job_id, after, ctx.settings.sse_keepalive_s, ctx.settings.sse_max_duration_s)
        response = Response(
            stream_with_context(body),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        # Not the generator's `finally`: a body never iterated (HEAD) never reaches it.
        response.call_on_close(slot.release)
        return response


class StreamSlot:
    """One open stream: a thread of this process, and one of the client's streams."""

    def __init__(self, threads: threading.BoundedSemaphore, connection: Redis, client: str, token: str):
        # Kept here: the WSGI server closes the response after the app context is gone.
        self._threads = threads
        self._connection = connection
        self._client = client
        self._token = token
        self._lock = threading.Lock()
        self._released = False

    @classmethod
    def take(cls, client: str) -> StreamSlot:
        """503 when this process serves its SSE_MAX_STREAMS, 429 when the client holds
        SSE_MAX_STREAMS_PER_CLIENT (both with Retry-After)."""
        ctx = app_context()
        retry = {"Retry-After": str(STREAM_FULL_RETRY_AFTER_S)}
        if not ctx.stream_slots.acquire(blocking=False):
            abort(503, message="too many open event streams; retry shortly", headers=retry)
        try:
            token = claim_stream(
                ctx.redis, client, cap=ctx.settings.sse_max_streams_per_client,
                max_duration_s=ctx.settings.sse_max_duration_s,
            )  # fmt: skip
        except BaseException:
            ctx.stream_slots.release()
            raise
        if token is None:
            ctx.stream_slots.release()
            abort(429, message="you hold as many open event streams as you may (SSE_MAX_STREAMS_PER_CLIENT); "
                  "close one or retry shortly", headers=retry)  # fmt: skip
        return cls(ctx.stream_slots, ctx.redis, client, token)

    def release(self) -> None:
        """Give both back, once, however often it is called."""
        with self._lock:
            if self._released:
                return
            self._released = True
        self._threads.release()
        try:
            release_stream(self._connection, self._client, self._token)
        except RedisError as exc:  # its entry lapses by itself after the stream's limit
            log.warning("could not release a stream slot of %s: %s", self._client, exc)


def _stream(
    connection: Redis, client: str, job_id: str, after: str, keepalive_s: float, max_duration_s: float
) -> Iterator[str]:
    # The server sends the status line and headers with the first chunk of the body: without
    # this comment a client would learn that its stream is open only at the first event or
    # keep-alive, up to SSE_KEEPALIVE_S later. A comment is no event to any SSE parser.
    yield ": stream open\n\n"
    started = idle_since = time.monotonic()
    while time.monotonic() - started < max_duration_s and not STOPPING.is_set():
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
    # The limit, or this process stopping: end here, so the client reconnects and resumes
    # with Last-Event-ID.
    if STOPPING.is_set():
        yield ": server stopping; reconnect with Last-Event-ID\n\n"
    else:
        yield ": stream time limit reached; reconnect with Last-Event-ID\n\n"


def _format(event: Event) -> str:
    lines = [f"id: {event.id}"] if event.id else []
    return "\n".join([*lines, f"event: {event.type}", f"data: {event.data}", "", ""])
