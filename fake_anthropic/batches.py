"""The Message Batches API: create, retrieve, list, cancel, delete, results.

A batch ends `batch_delay_s` after its create (``--batch-delay-ms``, env
``FAKE_BATCH_DELAY_MS``), or after the largest ``batch_delay_ms`` directive among its
requests. Its requests are answered when it ends, by the same rules as ``/v1/messages``
(directives included): a request the API would refuse, or one with ``error=STATUS``, is an
``errored`` result; ``batch_expire=1`` is ``expired``; a canceled batch ends with its
requests not yet answered ``canceled``. Results are served as JSON Lines in the reverse
order of the requests (the real API promises no order), usage ``service_tier: "batch"``.

Directives that hold the wire open, for crash tests of a caller:
- ``create_delay_ms=N`` in any request: the create waits N ms before it makes the batch (a
  caller gone meanwhile makes none);
- ``created_delay_ms=N``: the batch is made at once, its answer waits N ms;
- ``result_delay_ms=N``: the results stream pauses N ms before this request's line;
- ``clock_behind_ms=N``: the batch's ``created_at`` is stamped N ms early, as by a provider
  whose clock is behind the caller's (it is still listed as the newest);
- ``create_error=STATUS`` (with ``fail_times=K key=...``: the first K creates): the create
  is refused with that status.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Response, jsonify, request

from .content import read_prompt
from .directives import DirectiveError, Directives, parse_directives
from .models import is_known_model
from .replies import plan_reply
from .streaming import output_usage, wait_idle
from .wire import ERROR_TYPE_BY_STATUS, InvalidRequest, error_body, message_skeleton, new_id, validate_request

MAX_BATCH_BYTES = 256 * 1024 * 1024
MAX_BATCH_REQUESTS = 100_000
CANCEL_GRACE_S = 0.5  # how long a canceled batch stays `canceling`
MAX_BATCHES = 10_000  # kept; the oldest ended ones go first
CUSTOM_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Batch:
    id: str
    requests: list[tuple[str, dict[str, Any], Directives | None]]  # custom_id, params, directives
    created_at: datetime
    ends_at: float  # monotonic
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    results: list[tuple[str, dict[str, Any]]] | None = None
    result_delays: dict[str, float] = field(default_factory=dict)
    results_read: int = 0  # times its results were served to the last line

    def report(self) -> dict[str, Any]:
        """What `GET /_fake/batches` says of it: tests check that every batch made was read."""
        return {
            "id": self.id,
            "requests": len(self.requests),
            "created_at": _rfc3339(self.created_at),
            "results_read": self.results_read,
        }

    def as_dict(self, base_url: str) -> dict[str, Any]:
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if self.results is None:
            counts["processing"] = len(self.requests)
        else:
            for _, result in self.results:
                counts[result["type"]] += 1
        status = "ended" if self.results is not None else "canceling" if self.cancel_initiated_at else "in_progress"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.created_at + timedelta(hours=24)),
            "ended_at": _rfc3339(self.ended_at) if self.ended_at else None,
            "cancel_initiated_at": _rfc3339(self.cancel_initiated_at) if self.cancel_initiated_at else None,
            "archived_at": None,
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results" if self.results is not None else None,
        }


def _directives(params: dict[str, Any]) -> Directives | None:
    try:
        return (
            parse_directives(read_prompt(params).last_user_text) if isinstance(params.get("messages"), list) else None
        )
    except (InvalidRequest, DirectiveError):
        return None  # answered as an errored result when the batch ends


def _errored(status: int, message: str | None = None) -> dict[str, Any]:
    return {"type": "errored", "error": error_body(ERROR_TYPE_BY_STATUS[status], message)}


class BatchStore:
    """Every batch, shared by the server's request threads; `answer(params)` is one request's
    result, as `/v1/messages` would answer it."""

    def __init__(self, delay_s: float, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.lock = threading.Lock()
        self.delay_s = delay_s
        self.answer = answer
        self.batches: dict[str, Batch] = {}
        self.stats = {"batch_creates": 0, "batch_requests": 0, "batch_cancels": 0, "batch_results": 0}

    def refresh(self, batch: Batch) -> None:
        """End the batch once its time has come (all its requests answered then, none before)."""
        if batch.results is not None or time.monotonic() < batch.ends_at:
            return
        if batch.cancel_initiated_at is not None:
            batch.results = [(cid, {"type": "canceled"}) for cid, _, _ in batch.requests]
        else:
            batch.results = [(cid, self.answer(params)) for cid, params, _ in batch.requests]
        batch.ended_at = datetime.now(UTC)

    def add(self, batch: Batch) -> None:
        with self.lock:
            self.batches[batch.id] = batch
            if len(self.batches) > MAX_BATCHES:
                for old in [b.id for b in self.batches.values() if b.results is not None][: MAX_BATCHES // 10]:
                    del self.batches[old]
            self.stats["batch_creates"] += 1
            self.stats["batch_requests"] += len(batch.requests)


def _check_requests(body: Any) -> list[tuple[str, dict[str, Any], Directives | None]]:
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise InvalidRequest("requests: List should have at least 1 item after validation")
    if len(requests) > MAX_BATCH_REQUESTS:
        raise InvalidRequest(f"requests: List should have at most {MAX_BATCH_REQUESTS} items")
    seen: set[str] = set()
    checked = []
    for i, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 64 or set(custom_id) - CUSTOM_ID_CHARS:
            raise InvalidRequest(f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise InvalidRequest(f"requests.{i}.custom_id: custom_id '{custom_id}' is not unique")
        seen.add(custom_id)
        params = item.get("params")
        if not isinstance(params, dict):
            raise InvalidRequest(f"requests.{i}.params: Field required")
        checked.append((custom_id, params, _directives(params)))
    return checked


def add_batch_routes(
    app: Flask,
    store: BatchStore,
    error_response: Callable[..., Response],
    authenticated: Callable[[], bool],
    fail_count: Callable[[str], int],
) -> None:
    """Register the batch routes on the fake's app."""

    def base_url() -> str:
        return request.host_url.rstrip("/")

    def found(batch_id: str) -> Batch | None:
        with store.lock:
            batch = store.batches.get(batch_id)
            if batch is not None:
                store.refresh(batch)
            return batch

    @app.before_request
    def batch_auth() -> Response | None:
        if request.path.startswith("/v1/messages/batches") and not authenticated():
            return error_response(401, "missing API key: send x-api-key or Authorization: Bearer <key>")
        return None

    @app.post("/v1/messages/batches")
    def batch_create() -> Response:
        if (request.content_length or 0) > MAX_BATCH_BYTES:
            return error_response(413)
        try:
            requests = _check_requests(request.get_json(force=True, silent=True))
        except InvalidRequest as exc:
            return error_response(400, str(exc))
        given = [d for _, _, d in requests if d is not None]
        for d in given:
            if d.create_error is not None and (d.fail_times is None or fail_count(d.key or "") <= d.fail_times):
                return error_response(d.create_error)
        sock = request.environ.get("werkzeug.socket")
        if (hold := max((d.create_delay_ms for d in given), default=0)) and wait_idle(sock, hold / 1000):
            return error_response(500, "the caller went away before the batch was made")
        delay_ms = max((d.batch_delay_ms for d in given if d.batch_delay_ms is not None), default=None)
        delay_s = store.delay_s if delay_ms is None else delay_ms / 1000
        behind = timedelta(milliseconds=max((d.clock_behind_ms for d in given), default=0))
        batch = Batch(new_id("msgbatch"), requests, datetime.now(UTC) - behind, time.monotonic() + delay_s)
        batch.result_delays = {cid: d.result_delay_ms / 1000 for cid, _, d in requests if d and d.result_delay_ms}
        store.add(batch)
        if hold := max((d.created_delay_ms for d in given), default=0):
            wait_idle(sock, hold / 1000)
        return jsonify(batch.as_dict(base_url()))

    @app.get("/v1/messages/batches/<batch_id>")
    def batch_retrieve(batch_id: str) -> Response:
        batch = found(batch_id)
        if batch is None:
            return error_response(404, f"message_batch not found: {batch_id}")
        return jsonify(batch.as_dict(base_url()))

    @app.get("/v1/messages/batches")
    def batch_list() -> Response:
        try:
            limit = int(request.args.get("limit", "20"))
        except ValueError:
            return error_response(400, "limit: Input should be a valid integer")
        if not 1 <= limit <= 1000:
            return error_response(400, "limit: Input should be between 1 and 1000")
        with store.lock:
            newest_first = list(reversed(store.batches.values()))
            for batch in newest_first:
                store.refresh(batch)
        ids = [b.id for b in newest_first]
        if (after := request.args.get("after_id")) in ids:
            newest_first = newest_first[ids.index(after) + 1 :]
        elif (before := request.args.get("before_id")) in ids:
            newest_first = newest_first[: ids.index(before)][-limit:]
        page = newest_first[:limit]
        return jsonify(
            {
                "data": [b.as_dict(base_url()) for b in page],
                "has_more": len(newest_first) > limit,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            }
        )

    @app.post("/v1/messages/batches/<batch_id>/cancel")
    def batch_cancel(batch_id: str) -> Response:
        batch = found(batch_id)
        if batch is None:
            return error_response(404, f"message_batch not found: {batch_id}")
        with store.lock:
            if batch.results is None and batch.cancel_initiated_at is None:
                batch.cancel_initiated_at = datetime.now(UTC)
                batch.ends_at = min(batch.ends_at, time.monotonic() + CANCEL_GRACE_S)
                store.stats["batch_cancels"] += 1
        return jsonify(batch.as_dict(base_url()))

    @app.delete("/v1/messages/batches/<batch_id>")
    def batch_delete(batch_id: str) -> Response:
        batch = found(batch_id)
        if batch is None:
            return error_response(404, f"message_batch not found: {batch_id}")
        if batch.results is None:
            return error_response(400, f"Message Batch {batch_id} is still in progress; cancel it before deleting it.")
        with store.lock:
            store.batches.pop(batch_id, None)
        return jsonify({"id": batch_id, "type": "message_batch_deleted"})

    @app.get("/_fake/batches")
    def batch_reports() -> Response:
        """Every batch kept, oldest first: its id, size, created_at and how often its results
        were read to the end."""
        with store.lock:
            return jsonify([batch.report() for batch in store.batches.values()])

    @app.get("/v1/messages/batches/<batch_id>/results")
    def batch_results(batch_id: str) -> Response:
        batch = found(batch_id)
        if batch is None:
            return error_response(404, f"message_batch not found: {batch_id}")
        if batch.results is None:
            return error_response(
                400, f"Message Batch {batch_id} has not ended yet: its results are available once it has ended."
            )

        def lines(results: list[tuple[str, dict[str, Any]]]) -> Iterator[bytes]:
            for custom_id, result in reversed(results):
                if pause := batch.result_delays.get(custom_id):
                    time.sleep(pause)
                with store.lock:
                    store.stats["batch_results"] += 1
                yield (json.dumps({"custom_id": custom_id, "result": result}, separators=(",", ":")) + "\n").encode()
            with store.lock:  # the caller read on to the end
                batch.results_read += 1

        # The real API serves a .jsonl download; the SDK reads lines whatever the type.
        return Response(lines(batch.results), mimetype="application/binary")


def answer_for_batch(
    params: dict[str, Any], account: Callable[[Any], dict[str, Any]], fail_count: Callable[[str], int]
) -> dict[str, Any]:
    """One request's batch result, by the rules of `/v1/messages` (`account` gives a prompt's
    input usage, `fail_count` counts a `fail_times` key)."""
    if params.get("stream"):
        return _errored(400, "stream: Input should be False")
    try:
        validate_request(params)
        prompt = read_prompt(params)
        d = parse_directives(prompt.last_user_text)
        if not is_known_model(params["model"]):
            return _errored(404, f"model: {params['model']}")
        if d.fail_times is not None and d.key and fail_count(d.key) > d.fail_times:
            d = d.without_failures()
        if d.error is not None:
            return _errored(d.error)
        if d.batch_expire:
            return {"type": "expired"}
        reply = plan_reply(params, d, prompt.last_user_text)
    except (InvalidRequest, DirectiveError) as exc:
        return _errored(400, str(exc))
    usage = d.input_usage(max(1, prompt.chars // 4)) if d.cache_read is not None else account(prompt)
    message = {
        **message_skeleton(new_id("msg"), params["model"]),
        "content": [block.final() for block in reply.blocks],
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": {**usage, **output_usage(reply), "service_tier": "batch"},
    }
    return {"type": "succeeded", "message": message}
