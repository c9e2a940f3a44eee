"""What the sync and async clients share: the routes as `Call`s, settings from the
environment, the retry and reconnect schedules, and the ETag cache. The clients only add
the sending (and sleeping) of their own kind."""

from __future__ import annotations

import copy
import json
import os
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from llmjobs.errors import APIConnectionError, APIError, error_from_response
from llmjobs.types import Batch, Event, Job, JobPage, UsageReport

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_RECONNECT_TIMEOUT_S = 60.0
USER_AGENT = "llmjobs-python/0.2"

# Retries: the n-th waits uniformly up to min(RETRY_CAP_S, RETRY_BASE_S·2ⁿ) (full jitter),
# and never less than the server's Retry-After. A Retry-After past RETRY_AFTER_MAX_S is
# not waited out: the error is raised for the caller to decide.
RETRY_BASE_S, RETRY_CAP_S, RETRY_AFTER_MAX_S = 0.5, 8.0, 60.0
# Answers that say "not now" rather than "never": a rate limit or stream cap (429), the
# job store down, a queue full or the stream cap (503), a proxy while the API restarts.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

# wait(): the first sleep, the factor applied after each poll, and the cap (seconds).
WAIT_BACKOFF = (1.0, 1.5, 5.0)
SEEN_JOBS_KEPT = 1000  # jobs whose last answer (and ETag) `get` keeps, for If-None-Match

# stream(): the pause before a reconnect doubles from the first to the cap, and starts
# again once an event arrives; the read timeout must exceed the server's keep-alive.
RECONNECT_FIRST_S, RECONNECT_CAP_S = 0.5, 5.0
STREAM_READ_TIMEOUT_S = 60.0


def settings(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """The base URL and key: given, else LLMJOBS_URL / LLMJOBS_API_KEY (URL default: local)."""
    url = base_url or os.environ.get("LLMJOBS_URL") or DEFAULT_URL
    key = api_key or os.environ.get("LLMJOBS_API_KEY")
    if not key:
        raise APIError("no API key: pass api_key or set LLMJOBS_API_KEY")
    return url.rstrip("/"), key


def default_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Accept": "application/json", "User-Agent": USER_AGENT}


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: what to send, and how to read a successful answer. `retryable`: the
    call may be sent again when its answer was lost (it is idempotent, or carries an
    Idempotency-Key)."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    files: dict[str, Any] | None = None  # a multipart upload (a document)
    retryable: bool = False
    timeout: float | None = None


def body_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise APIError(
            f"the answer to {response.request.method} {response.request.url.path} is not JSON",
            status_code=response.status_code,
            response=response,
        ) from exc


def check(response: httpx.Response) -> httpx.Response:
    """The response if it is not an error; else its typed `APIError` (body read first)."""
    if response.is_error:
        raise error_from_response(response)
    return response


def retry_pause(call: Call[Any], error: APIError, retries_done: int, max_retries: int) -> float | None:
    """How long to wait before sending `call` again after `error`; None: do not retry."""
    if retries_done >= max_retries:
        return None
    if isinstance(error, APIConnectionError):
        if error.sent and not call.retryable:
            return None  # it may have been acted on: only an idempotent call goes again
    elif not (call.retryable and error.status_code in RETRY_STATUSES):
        return None
    if error.retry_after is not None and error.retry_after > RETRY_AFTER_MAX_S:
        return None
    backoff = random.uniform(0, min(RETRY_CAP_S, RETRY_BASE_S * 2**retries_done))
    return max(backoff, error.retry_after or 0.0)


# --------------------------------------------------------------------------- the routes


def job_path(job_id: str) -> str:
    if not job_id:
        raise ValueError("job_id must not be empty")
    return "/v1/jobs/" + quote(job_id, safe="")


def batch_path(batch_id: str) -> str:
    if not batch_id:
        raise ValueError("batch_id must not be empty")
    return "/v1/batches/" + quote(batch_id, safe="")


def job_request(**fields: Any) -> dict[str, Any]:
    """A job request body: only the fields given (not None)."""
    body = {name: value for name, value in fields.items() if value is not None}
    if "messages" in body:
        body["messages"] = [dict(message) for message in body["messages"]]
    if "metadata" in body:
        body["metadata"] = dict(body["metadata"])
    if "params" in body:
        body["params"] = dict(body["params"])
    return body


def _keyed(idempotency_key: str | None) -> dict[str, str]:
    """The Idempotency-Key header: the one given, else a new one, so the submit may be
    resent safely when its answer is lost."""
    return {"Idempotency-Key": idempotency_key or f"llmjobs-{uuid.uuid4()}"}


def submit_call(body: dict[str, Any], idempotency_key: str | None, timeout: float | None) -> Call[Job]:
    return Call("POST", "/v1/jobs", parse_job, json=body, headers=_keyed(idempotency_key), retryable=True,
                timeout=timeout)  # fmt: skip


def analyze_options(analyses: Sequence[str | Mapping[str, str]] | None = None, **options: Any) -> dict[str, Any]:
    """The options of `POST /v1/documents` that were given (see `JobsClient.analyze`)."""
    items = [item if isinstance(item, str) else dict(item) for item in analyses] if analyses else None
    return job_request(analyses=items, **options)


def analyze_call(
    path: str | os.PathLike[str], options: dict[str, Any], idempotency_key: str | None, timeout: float | None
) -> Call[Job]:
    """POST /v1/documents: the file and the options (those given) as one JSON part, with an
    Idempotency-Key, so that it may be resent like a submit."""
    with open(path, "rb") as file:
        data = file.read()
    files = {"file": (os.path.basename(path), data), "options": (None, json.dumps(options), "application/json")}
    return Call("POST", "/v1/documents", parse_job, files=files, headers=_keyed(idempotency_key), retryable=True,
                timeout=timeout)  # fmt: skip


def list_call(status: str | None, limit: int | None, cursor: str | None, timeout: float | None) -> Call[JobPage]:
    params = {name: value for name, value in (("status", status), ("limit", limit), ("cursor", cursor)) if value}
    return Call("GET", "/v1/jobs", lambda r: JobPage.from_dict(body_of(r)), params=params or None, retryable=True,
                timeout=timeout)  # fmt: skip


def job_change_call(job_id: str, change: str, timeout: float | None) -> Call[Job]:
    """cancel, retry, webhook/redeliver: not resent after a lost answer (not idempotent)."""
    return Call("POST", f"{job_path(job_id)}/{change}", parse_job, timeout=timeout)


def submit_batch_call(
    jobs: Sequence[str | Mapping[str, Any]],
    metadata: Mapping[str, str] | None,
    callback_url: str | None,
    idempotency_key: str | None,
    timeout: float | None,
) -> Call[Batch]:
    body = job_request(
        jobs=[{"prompt": job} if isinstance(job, str) else job_request(**job) for job in jobs],
        metadata=metadata,
        callback_url=callback_url,
    )
    return Call("POST", "/v1/batches", parse_batch, json=body, headers=_keyed(idempotency_key), retryable=True,
                timeout=timeout)  # fmt: skip


def get_batch_call(batch_id: str, timeout: float | None) -> Call[Batch]:
    return Call("GET", batch_path(batch_id), parse_batch, retryable=True, timeout=timeout)


def redeliver_batch_call(batch_id: str, timeout: float | None) -> Call[Batch]:
    return Call("POST", f"{batch_path(batch_id)}/webhook/redeliver", parse_batch, timeout=timeout)


def usage_call(
    date_from: date | str | None, date_to: date | str | None, group_by: str | None, timeout: float | None
) -> Call[UsageReport]:
    params = {"from": date_from, "to": date_to, "group_by": group_by}
    params = {name: str(value) for name, value in params.items() if value is not None}
    return Call("GET", "/v1/usage", lambda r: UsageReport.from_dict(body_of(r)), params=params or None,
                retryable=True, timeout=timeout)  # fmt: skip


def parse_job(response: httpx.Response) -> Job:
    return Job.from_dict(body_of(response))


def parse_batch(response: httpx.Response) -> Batch:
    return Batch.from_dict(body_of(response))


class JobCache:
    """The last answer (and its ETag) for each job `get` read: sent back as If-None-Match,
    so an unchanged job costs a bodiless 304 and is read from here."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, dict[str, Any]]] = {}

    def get_call(self, job_id: str, timeout: float | None) -> Call[Job]:
        kept = self._seen.get(job_id)
        headers = {"If-None-Match": kept[0]} if kept else {}
        return Call("GET", job_path(job_id), lambda r: self._read(job_id, r), headers=headers, retryable=True,
                    timeout=timeout)  # fmt: skip

    def _read(self, job_id: str, response: httpx.Response) -> Job:
        kept = self._seen.get(job_id)
        if response.status_code == 304 and kept:
            return Job.from_dict(copy.deepcopy(kept[1]))
        raw = body_of(response)
        if etag := response.headers.get("ETag"):
            self._seen.pop(job_id, None)
            self._seen[job_id] = (etag, copy.deepcopy(raw))
            while len(self._seen) > SEEN_JOBS_KEPT:
                self._seen.pop(next(iter(self._seen)))  # the oldest
        return Job.from_dict(raw)


class WaitSchedule:
    """wait(): 1 s, then 1.5 times longer each time, at most 5 s, never past the deadline;
    an error worth waiting out (429, 503, no connection) waits at least its Retry-After."""

    def __init__(self, timeout: float, now: float) -> None:
        self.timeout = timeout
        self.deadline = now + timeout
        self._delay = WAIT_BACKOFF[0]

    def pause(self, now: float, retry_after: float | None = None) -> float | None:
        """The next sleep; None once the deadline has passed."""
        remaining = self.deadline - now
        if remaining <= 0:
            return None
        pause = max(self._delay, retry_after or 0.0)
        self._delay = min(self._delay * WAIT_BACKOFF[1], WAIT_BACKOFF[2])
        return min(pause, remaining)


def is_waitable(error: APIError) -> bool:
    """An error wait() waits out rather than raises: it says nothing about the job."""
    return isinstance(error, APIConnectionError) or error.status_code in RETRY_STATUSES


class Reconnects:
    """When stream() connects again: after a pause that doubles from RECONNECT_FIRST_S to
    RECONNECT_CAP_S (at least the server's Retry-After or `retry:`), and starts over once
    the stream works again; it gives up once the stream has not worked for `timeout` s."""

    def __init__(self, timeout: float, now: float) -> None:
        self.timeout = timeout
        self.working_since = now
        self.failures = 0
        self.server_retry_s: float | None = None

    def worked(self, now: float) -> None:
        self.failures = 0
        self.working_since = now

    def pause(self, now: float, problem: str, retry_after: float | None = None) -> float:
        """The pause before the next attempt; raises APIConnectionError when out of time."""
        backoff = min(RECONNECT_CAP_S, RECONNECT_FIRST_S * 2**self.failures)
        self.failures += 1
        pause = max(backoff, retry_after or 0.0, self.server_retry_s or 0.0)
        if now + pause - self.working_since > self.timeout:
            raise APIConnectionError(f"{problem} (gave up after reconnecting for {self.timeout:g} s)")
        return pause


def stream_request(job_id: str, last_event_id: str | None) -> tuple[str, dict[str, str]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    return f"{job_path(job_id)}/events", headers


def stream_timeout(timeout: float) -> httpx.Timeout:
    return httpx.Timeout(timeout, read=max(timeout, STREAM_READ_TIMEOUT_S))


def event_of(event: str, data: str, id: str | None) -> Event | None:
    """A server-sent event as the client's `Event`; None for one without data (no event, by
    the spec; httpx-sse 0.4 yields one for the blank line after a `: keep-alive` comment)."""
    if not data:
        return None
    try:
        parsed: Any = json.loads(data)
    except ValueError:
        parsed = data
    return Event.from_sse(id, event, parsed)
