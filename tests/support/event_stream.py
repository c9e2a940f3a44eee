"""A job's event stream (server-sent events, `GET /v1/jobs/<id>/events`) read as a client would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource

from tests.support.keys import ALICE


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: Any


def events_of(response: httpx.Response) -> Iterator[Event]:
    """The server-sent events of a response (parsed by httpx-sse; data as JSON). Once an id
    was seen, httpx-sse 0.4 also yields an empty event for the blank line after a
    `: keep-alive` comment: no event, by the spec."""
    for sse in EventSource(response).iter_sse():
        if sse.data:
            yield Event(sse.id, sse.event, json.loads(sse.data))


def read_stream(api: str, job_id: str, last_event_id: str | None = None, limit: int | None = None) -> list[Event]:
    """Events until the server closes the stream (or `limit` events have come)."""
    headers = {**ALICE, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    events = []
    with httpx.stream("GET", f"{api}/v1/jobs/{job_id}/events", headers=headers, timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for event in events_of(response):
            events.append(event)
            if limit is not None and len(events) >= limit:
                break
    return events


def progress_text(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "progress")
