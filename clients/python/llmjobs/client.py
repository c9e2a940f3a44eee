"""A small Python client for the LLM job service's HTTP API (v1).

This module imports only the standard library, `requests` and `standardwebhooks`, so it
can be copied into another code base on its own.

Usage::

    from service.client import JobsClient, APIError

    client = JobsClient("http://127.0.0.1:8000", api_key="...")
    job = client.submit("Write a haiku about queues", priority="high", metadata={"ticket": "T-1"})
    done = client.wait(job["id"], timeout=120)          # polls: 1 s, 1.5 s, 2.25 s, ... at most 5 s
    print(done["status"], done["result"]["text"] if done["result"] else done["error"])

    for event in client.stream(job["id"]):              # Server-Sent Events, resumed on a dropped connection
        if event.event == "progress":
            print(event.data["text"], end="", flush=True)
        else:                                           # succeeded / failed / canceled: the job resource
            print("\\n", event.event, event.data["result"])

    try:
        client.cancel(job["id"])
    except APIError as exc:                             # ConflictError (409) once the job has finished
        print(exc.status_code, exc.message)

Receiving a webhook (the raw body bytes, exactly as received)::

    job = verify_webhook(request.get_data(), request.headers, secret=os.environ["WEBHOOK_SECRET"])
"""

from __future__ import annotations

import codecs
import copy
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests
import standardwebhooks

__all__ = [
    "STREAM_MAX_RECONNECTS",
    "TERMINAL_STATUSES",
    "WAIT_BACKOFF",
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "Event",
    "JobsClient",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "SSEParser",
    "ServerError",
    "ServiceUnavailableError",
    "ValidationError",
    "WaitTimeout",
    "WebhookVerificationError",
    "verify_webhook",
]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})

# wait(): the first sleep, the factor applied after each poll, and the cap (seconds).
WAIT_BACKOFF = (1.0, 1.5, 5.0)
SEEN_JOBS_KEPT = 1000  # jobs whose last answer (and ETag) `get` keeps, for If-None-Match

# stream(): reconnects in a row without receiving an event before giving up, the pause
# before each one (unless the server sent `retry:`), and the read timeout, which must
# exceed the server's ~15 s keep-alive interval.
STREAM_MAX_RECONNECTS = 5
STREAM_RECONNECT_DELAY_S = 0.5
STREAM_READ_TIMEOUT_S = 60.0

USER_AGENT = "llm-jobs-client/0.1"


# --------------------------------------------------------------------------- errors


class APIError(Exception):
    """An error answer from the API (or, for `APIConnectionError`, no answer at all).

    `status_code` is the HTTP status, `code`/`message`/`errors` come from the body
    (`{"code", "status", "message", "errors"?}`), `retry_after` is `Retry-After` in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: int | None = None,
        errors: dict[str, Any] | None = None,
        retry_after: float | None = None,
        response: requests.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code if code is not None else status_code
        self.errors = errors
        self.retry_after = retry_after
        self.response = response

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code is not None else self.message


class APIConnectionError(APIError):
    """The API could not be reached, or the connection broke (no HTTP status)."""


class BadRequestError(APIError):
    """400"""


class AuthenticationError(APIError):
    """401: missing or unknown API key."""


class NotFoundError(APIError):
    """404: no such job (or another client's job)."""


class ConflictError(APIError):
    """409: the job is in the wrong state, or an Idempotency-Key was reused with another body."""


class PayloadTooLargeError(APIError):
    """413"""


class ValidationError(APIError):
    """422: the request was refused; `errors` says which fields and why."""


class RateLimitError(APIError):
    """429: see `retry_after`."""


class ServerError(APIError):
    """5xx"""


class ServiceUnavailableError(ServerError):
    """503: the service (its job store) is unavailable; see `retry_after`."""


_ERROR_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


class WaitTimeout(Exception):
    """`JobsClient.wait` gave up; `job` is the last job seen (None if none was read)."""

    def __init__(self, message: str, job: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.job = job


class WebhookVerificationError(standardwebhooks.WebhookVerificationError):
    """The webhook's signature, timestamp or headers are wrong (a standardwebhooks error too)."""


def _parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: requests.Response) -> APIError:
    """The typed `APIError` for a non-2xx response, whatever its body (JSON or not)."""
    status = response.status_code
    cls = _ERROR_CLASSES.get(status) or (ServerError if status >= 500 else APIError)
    code, message, errors = status, None, None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("code"), int):
            code = body["code"]
        if body.get("message") is not None:
            message = str(body["message"])
        if isinstance(body.get("errors"), dict):
            errors = body["errors"]
    if message is None:
        text = (response.text or "").strip()
        if text and body is None:
            message = text if len(text) <= 300 else text[:300] + "…"
        else:
            message = response.reason or f"HTTP {status}"
    return cls(
        message,
        status_code=status,
        code=code,
        errors=errors,
        retry_after=_parse_retry_after(response.headers.get("Retry-After")),
        response=response,
    )


# --------------------------------------------------------------------------- Server-Sent Events


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: `id` (None if the stream never set one), `event` (the type,
    "message" by default) and `data` (parsed from JSON; the raw string if it is not JSON)."""

    id: str | None
    event: str
    data: Any


_LINE_END = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """An incremental `text/event-stream` parser following the WHATWG rules.

    Feed it bytes as they arrive (chunk boundaries may fall anywhere, even inside a UTF-8
    character or between CR and LF); it returns the events completed by each chunk.
    Lines end with CRLF, LF or CR; `:` starts a comment; `field: value` loses one leading
    space from the value; several `data` lines are joined with "\\n"; a blank line
    dispatches; an event with no data is not dispatched; the id persists across events
    until changed (an id containing NUL is ignored). An event left without its blank line
    at the end of the stream is discarded, as the spec says: `stream()` resumes from the
    last dispatched id instead, so nothing is lost.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""  # an incomplete line
        self._skip_lf = False  # the last chunk ended with CR: a leading LF belongs to it
        self._started = False  # a leading BOM is dropped
        self._data: list[str] = []
        self._event_type = ""
        self._last_id = ""
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes | str) -> list[Event]:
        text = chunk if isinstance(chunk, str) else self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        self._skip_lf = False
        lines = _LINE_END.split(self._tail + text)
        self._tail = lines.pop()
        if text.endswith("\r"):
            self._skip_lf = True
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, event_type = self._data, self._event_type
        self._data, self._event_type = [], ""
        if not data:
            return None
        raw = "\n".join(data)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return Event(id=self._last_id or None, event=event_type or "message", data=parsed)


# --------------------------------------------------------------------------- the client


class JobsClient:
    """The job API over HTTP.

    `timeout` applies to each request (connect and read). `sleep` and `clock` are what
    `wait()` and `stream()` use to pause and tell time (injectable for tests). The client
    is a context manager that closes its session (only one it created).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._seen: dict[str, tuple[str, dict[str, Any]]] = {}  # job id -> (ETag, job), for If-None-Match

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def __repr__(self) -> str:
        return f"JobsClient({self.base_url!r})"

    # ---- the routes

    def submit(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        priority: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout_s: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Queue a job (`POST /v1/jobs`) and return it; only the fields given are sent.

        With `idempotency_key`, a repeat of the same request returns the first job, and
        the same key with another body raises `ConflictError`.
        """
        fields: dict[str, Any] = {
            "prompt": prompt,
            "messages": [dict(message) for message in messages] if messages is not None else None,
            "system": system,
            "model": model,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "priority": priority,
            "metadata": dict(metadata) if metadata is not None else None,
            "timeout_s": timeout_s,
            "callback_url": callback_url,
        }
        body = {name: value for name, value in fields.items() if value is not None}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        return self._request("POST", "/v1/jobs", json=body, headers=headers)

    def get(self, job_id: str) -> dict[str, Any]:
        """The job (`GET /v1/jobs/{id}`). It sends the ETag of the last answer for this job as
        `If-None-Match`: an unchanged job comes back as a bodiless `304`, and the copy kept
        from that answer is returned."""
        path = self._job_path(job_id)
        kept = self._seen.get(job_id)
        response = self._send("GET", path, headers={"If-None-Match": kept[0]} if kept else None)
        if response.status_code == 304 and kept:
            return copy.deepcopy(kept[1])
        job = self._json(response, "GET", path)
        if etag := response.headers.get("ETag"):
            self._seen.pop(job_id, None)
            self._seen[job_id] = (etag, copy.deepcopy(job))
            while len(self._seen) > SEEN_JOBS_KEPT:
                self._seen.pop(next(iter(self._seen)))  # the oldest
        return job

    def list(self, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """One page of your jobs, newest first: `{"data": [...], "next_cursor": ...}`.
        Pass `next_cursor` back as `cursor` for the next page (None at the end)."""
        params = {
            name: value
            for name, value in (("status", status), ("limit", limit), ("cursor", cursor))
            if value is not None
        }
        return self._request("GET", "/v1/jobs", params=params or None)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: a queued one at once, a running one within a second (its status is
        still `running` in the answer). `ConflictError` once it has finished."""
        return self._request("POST", self._job_path(job_id) + "/cancel")

    def retry(self, job_id: str) -> dict[str, Any]:
        """Run a failed or canceled job again. `ConflictError` otherwise."""
        return self._request("POST", self._job_path(job_id) + "/retry")

    # ---- waiting

    def wait(self, job_id: str, timeout: float = 600.0) -> dict[str, Any]:
        """Poll the job until it is succeeded, failed or canceled, and return it.

        Sleeps `WAIT_BACKOFF`: 1 s, then 1.5 times longer each time, at most 5 s (never past
        the deadline). A 503, a 429 or a connection error is waited out (at least its
        `Retry-After`) within the same deadline. Raises `WaitTimeout`, carrying the last job
        seen, once `timeout` seconds have passed.
        """
        first, factor, cap = WAIT_BACKOFF
        deadline = self._clock() + timeout
        delay = first
        job: dict[str, Any] | None = None
        while True:
            pause = delay
            try:
                job = self.get(job_id)
            except (APIConnectionError, RateLimitError, ServiceUnavailableError) as exc:
                if job is None and self._clock() >= deadline:
                    raise
                pause = max(delay, exc.retry_after or 0.0)
            else:
                if job.get("status") in TERMINAL_STATUSES:
                    return job
            remaining = deadline - self._clock()
            if remaining <= 0:
                status = job.get("status") if job else "unknown"
                raise WaitTimeout(f"job {job_id} is still {status} after {timeout:g} s", job)
            self._sleep(min(pause, remaining))
            delay = min(delay * factor, cap)

    # ---- streaming

    def stream(self, job_id: str, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events (`GET /v1/jobs/{id}/events`) as they happen.

        `progress` events carry `{"text": <new text>, "output_tokens", "attempt"}` (when
        `attempt` grows a retry began and the text restarts from empty); then exactly one
        terminal event, `succeeded`, `failed` or `canceled`, carrying the job resource, after
        which the iterator stops. With `last_event_id`, resumes after that event. A dropped
        connection is resumed from the last event received, so no event is missed or
        repeated; a 503 (the server's stream cap) is retried after its `Retry-After`; after
        `STREAM_MAX_RECONNECTS` failed reconnects in a row it raises `APIConnectionError`.
        Any other error answer (404, 401, 422 for a foreign `last_event_id`) raises at once.
        """
        url = self.base_url + self._job_path(job_id) + "/events"
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            parser = SSEParser()
            problem = "the stream ended before a terminal event"
            pause: float | None = None
            try:
                response = self._session.request(
                    "GET",
                    url,
                    headers=self._headers(headers),
                    stream=True,
                    timeout=(self.timeout, max(self.timeout, STREAM_READ_TIMEOUT_S)),
                )
            except requests.RequestException as exc:
                problem = f"cannot connect: {exc}"
            else:
                with response:
                    if response.status_code == 503:  # e.g. too many open streams: wait, then try again
                        error = error_from_response(response)
                        problem, pause = f"503: {error.message}", error.retry_after
                    elif not response.ok:
                        raise error_from_response(response)
                    else:
                        try:
                            for chunk in response.iter_content(chunk_size=None):
                                for event in parser.feed(chunk):
                                    failures = 0
                                    if event.id:
                                        last_event_id = event.id
                                    yield event
                                    if event.event in TERMINAL_STATUSES:
                                        return
                        except requests.RequestException as exc:
                            problem = f"the connection broke: {exc}"
            failures += 1
            if failures > STREAM_MAX_RECONNECTS:
                raise APIConnectionError(f"{problem} (gave up after {STREAM_MAX_RECONNECTS} reconnects)")
            if pause is None:
                pause = parser.retry_ms / 1000 if parser.retry_ms is not None else STREAM_RECONNECT_DELAY_S
            self._sleep(pause)

    # ---- plumbing

    @staticmethod
    def _job_path(job_id: str) -> str:
        if not job_id:
            raise ValueError("job_id must not be empty")
        return "/v1/jobs/" + quote(job_id, safe="")

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        headers.update(extra or {})
        return headers

    def _request(self, method: str, path: str, **send: Any) -> dict[str, Any]:
        """`_send`, then the answer's JSON (an error raised as its exception)."""
        return self._json(self._send(method, path, **send), method, path)

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        try:
            return self._session.request(
                method,
                self.base_url + path,
                json=json,
                params=params,
                headers=self._headers(headers),
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise APIConnectionError(f"cannot reach {self.base_url}: {exc}") from exc

    def _json(self, response: requests.Response, method: str, path: str) -> dict[str, Any]:
        if not response.ok:
            raise error_from_response(response)
        try:
            return response.json()
        except ValueError as exc:
            raise APIError(
                f"the answer to {method} {path} is not JSON", status_code=response.status_code, response=response
            ) from exc


# --------------------------------------------------------------------------- webhooks


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> dict[str, Any]:
    """Check a webhook's Standard Webhooks signature and return the job it carries.

    `body` must be the raw request body, unparsed; `headers` any mapping holding
    `webhook-id`, `webhook-timestamp` and `webhook-signature` (case does not matter);
    `secret` is `WEBHOOK_SECRET` (`whsec_...`). Raises `WebhookVerificationError` when a
    header is missing or malformed, the signature does not match, or the timestamp is more
    than 5 minutes away from now (a replay).
    """
    webhook = standardwebhooks.Webhook(secret)  # a bad secret is a configuration error: let it raise
    header_map = {str(name): str(value) for name, value in headers.items()}
    try:
        webhook.verify(body, header_map, json_parse=False)
    except standardwebhooks.WebhookVerificationError as exc:
        raise WebhookVerificationError(str(exc)) from exc
    except (ValueError, TypeError) as exc:  # e.g. a signature without "v1," or not base64
        raise WebhookVerificationError(f"malformed webhook headers: {exc}") from exc
    text = body.decode() if isinstance(body, bytes) else body
    return json.loads(text)
