"""The synchronous client: `JobsClient`.

from llmjobs import JobsClient

with JobsClient() as jobs:                     # LLMJOBS_URL, LLMJOBS_API_KEY
    job = jobs.submit("Write a haiku about queues", priority="high")
    for event in jobs.stream(job.id):          # resumes across dropped connections
        if event.event == "progress":
            print(event.data.text, end="", flush=True)
    done = jobs.wait(job.id)                   # or poll: 1 s, x1.5, up to 5 s
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from llmjobs import _base
from llmjobs._base import Call
from llmjobs.errors import APIError, WaitTimeout, connection_error, error_from_response
from llmjobs.types import Batch, Event, Job, JobPage, UsageReport

T = TypeVar("T")


class JobsClient:
    """The job API over HTTP, synchronously.

    `base_url` and `api_key` default to LLMJOBS_URL and LLMJOBS_API_KEY. `timeout` applies
    to each request (every method also takes its own `timeout`). `max_retries`: how often
    a call that failed for now (a 429 or 503, a lost connection) is sent again, after
    Retry-After or a jittered back-off; only idempotent calls and submits (which carry an
    Idempotency-Key, made up unless given) are resent, and any call that never reached the
    server. `reconnect_timeout`: how long `stream()` keeps reconnecting. `sleep`/`clock`
    are injectable for tests. A context manager: it closes the httpx client it made.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = _base.DEFAULT_TIMEOUT_S,
        max_retries: int = _base.DEFAULT_MAX_RETRIES,
        reconnect_timeout: float = _base.DEFAULT_RECONNECT_TIMEOUT_S,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url, api_key = _base.settings(base_url, api_key)
        self.timeout = timeout
        self.max_retries = max_retries
        self.reconnect_timeout = reconnect_timeout
        self._own_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client()
        self._headers = _base.default_headers(api_key)
        self._sleep = sleep
        self._clock = clock
        self._jobs = _base.JobCache()

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __repr__(self) -> str:
        return f"JobsClient({self.base_url!r})"

    # ---- jobs

    def submit(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        priority: str | None = None,
        tier: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout_s: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Queue a job (`POST /v1/jobs`): a `prompt`, `messages`, or `params` (any Messages API
        request: tools, images, PDFs, thinking, output_config, cache_control...; `system`,
        `model` and `max_tokens` then go inside it). Only the fields given are sent. It always carries
        an `Idempotency-Key` (`idempotency_key`, else a new one): resent after a lost answer,
        it returns the first job; the same key with another body raises `ConflictError`. `tier="batch"`:
        sent through Anthropic's Message Batches API at half price, answered within 24 h."""
        body = _base.job_request(
            prompt=prompt, messages=messages, params=params, system=system, model=model, max_tokens=max_tokens,
            priority=priority, tier=tier, metadata=metadata, timeout_s=timeout_s,
            callback_url=callback_url,
        )  # fmt: skip
        return self._call(_base.submit_call(body, idempotency_key, timeout))

    def analyze(
        self,
        path: str | os.PathLike[str],
        *,
        analyses: Sequence[str | Mapping[str, str]] | None = None,
        extraction: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        priority: str | None = None,
        metadata: Mapping[str, str] | None = None,
        timeout_s: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Upload a document (`POST /v1/documents`) for analysis; its job has `kind:
        "document"` (`job.raw` holds `document`, `steps`, `progress.percent` and, once done,
        `result.analyses`). An item of `analyses` is a built-in name (`summary`, `key_points`,
        `sentiment`, `topics`) or `{"name", "prompt", "output": "text" | "json"}`; only the
        options given are sent. Like `submit`, it carries an `Idempotency-Key` (`idempotency_key`,
        else a new one), so a lost answer is resent safely. Follow it with `wait()` or `stream()`."""
        options = _base.analyze_options(
            analyses, extraction=extraction, model=model, max_tokens=max_tokens, priority=priority,
            metadata=metadata, timeout_s=timeout_s, callback_url=callback_url,
        )  # fmt: skip
        return self._call(_base.analyze_call(path, options, idempotency_key, timeout))

    def get(self, job_id: str, *, timeout: float | None = None) -> Job:
        """The job (`GET /v1/jobs/{id}`); an unchanged job costs a bodiless 304."""
        return self._call(self._jobs.get_call(job_id, timeout))

    def list(
        self,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        *,
        timeout: float | None = None,
    ) -> JobPage:
        """One page of your jobs, newest first; pass `next_cursor` back as `cursor`."""
        return self._call(_base.list_call(status, limit, cursor, timeout))

    def cancel(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Cancel a job: a queued one at once, a running one within a second (its status is
        still `running` in the answer). `ConflictError` once it has finished."""
        return self._call(_base.job_change_call(job_id, "cancel", timeout))

    def retry(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Run a failed or canceled job again (a document job that succeeded with failed
        steps: those steps). `ConflictError` otherwise."""
        return self._call(_base.job_change_call(job_id, "retry", timeout))

    def redeliver_webhook(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Send an ended job's webhook again, under the same `webhook-id`."""
        return self._call(_base.job_change_call(job_id, "webhook/redeliver", timeout))

    def wait(self, job_id: str, timeout: float = 600.0, *, on_update: Callable[[Job], None] | None = None) -> Job:
        """Poll the job until it has ended and return it (`on_update` sees every answer).
        Raises `WaitTimeout`, carrying the last job seen, after `timeout` seconds."""
        return self._wait(lambda: self.get(job_id), f"job {job_id}", timeout, on_update)

    # ---- batches

    def submit_batch(
        self,
        jobs: Sequence[str | Mapping[str, Any]],
        *,
        metadata: Mapping[str, str] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Batch:
        """Queue many jobs in one request (`POST /v1/batches`): each a prompt or a job
        request (the keyword arguments of `submit`, as a mapping). All or nothing."""
        return self._call(_base.submit_batch_call(jobs, metadata, callback_url, idempotency_key, timeout))

    def get_batch(self, batch_id: str, *, timeout: float | None = None) -> Batch:
        return self._call(_base.get_batch_call(batch_id, timeout))

    def redeliver_batch_webhook(self, batch_id: str, *, timeout: float | None = None) -> Batch:
        return self._call(_base.redeliver_batch_call(batch_id, timeout))

    def wait_batch(
        self, batch_id: str, timeout: float = 600.0, *, on_update: Callable[[Batch], None] | None = None
    ) -> Batch:
        """Poll the batch until it is done, as `wait` does for a job."""
        return self._wait(lambda: self.get_batch(batch_id), f"batch {batch_id}", timeout, on_update)

    # ---- usage

    def usage(
        self,
        date_from: date | str | None = None,
        date_to: date | str | None = None,
        group_by: str | None = None,
        *,
        timeout: float | None = None,
    ) -> UsageReport:
        """Your tokens and cost per UTC day, model or client (`group_by`), and the total."""
        return self._call(_base.usage_call(date_from, date_to, group_by, timeout))

    # ---- streaming

    def stream(self, job_id: str, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events (`GET /v1/jobs/{id}/events`) as they happen: `progress` events,
        then one of `succeeded`, `failed`, `canceled` (carrying the job), and the iterator
        stops. With `last_event_id`, resumes after that event.

        A dropped connection, a restarting server or a 429/503 "not now" is reconnected
        with back-off, resuming from the last event received (no gap, no repeat), for up to
        `reconnect_timeout` seconds without progress; then `APIConnectionError`. Any other
        error answer (404, 401, 422 for a foreign `last_event_id`) raises at once."""
        reconnects = _base.Reconnects(self.reconnect_timeout, self._clock())
        while True:
            path, headers = _base.stream_request(job_id, last_event_id)
            retry_after = None
            try:
                with self._http.stream(
                    "GET", self.base_url + path, headers={**self._headers, **headers, "Accept": "text/event-stream"},
                    timeout=_base.stream_timeout(self.timeout),
                ) as response:  # fmt: skip
                    if response.is_error:
                        response.read()
                        error = error_from_response(response)
                        if error.status_code not in _base.RETRY_STATUSES:
                            raise error
                        problem, retry_after = str(error), error.retry_after
                    else:
                        reconnects.worked(self._clock())
                        for sse in EventSource(response).iter_sse():
                            if sse.retry is not None:
                                reconnects.server_retry_s = sse.retry / 1000
                            event = _base.event_of(sse.event, sse.data, sse.id)
                            if event is None:
                                continue
                            reconnects.worked(self._clock())
                            last_event_id = event.id or last_event_id
                            yield event
                            if event.terminal:
                                return
                        problem = "the stream ended before the job's end"
            except httpx.TransportError as exc:
                problem = str(connection_error(exc, self.base_url))
            self._sleep(reconnects.pause(self._clock(), problem, retry_after))

    # ---- plumbing

    def _call(self, call: Call[T]) -> T:
        retries = 0
        while True:
            try:
                return call.parse(self._send(call))
            except APIError as error:
                pause = _base.retry_pause(call, error, retries, self.max_retries)
                if pause is None:
                    raise
            retries += 1
            self._sleep(pause)

    def _send(self, call: Call[Any]) -> httpx.Response:
        try:
            response = self._http.request(
                call.method, self.base_url + call.path, json=call.json, params=call.params, files=call.files,
                headers={**self._headers, **call.headers},
                timeout=call.timeout if call.timeout is not None else self.timeout,
            )  # fmt: skip
        except httpx.TransportError as exc:
            raise connection_error(exc, self.base_url) from exc
        return _base.check(response)

    def _wait(self, fetch: Callable[[], T], what: str, timeout: float, on_update: Callable[[T], None] | None) -> T:
        schedule = _base.WaitSchedule(timeout, self._clock())
        seen: T | None = None
        while True:
            retry_after = None
            try:
                seen = fetch()
            except APIError as error:
                if not _base.is_waitable(error):
                    raise
                retry_after = error.retry_after
            else:
                if on_update is not None:
                    on_update(seen)
                if seen.done:  # type: ignore[attr-defined]
                    return seen
            pause = schedule.pause(self._clock(), retry_after)
            if pause is None:
                status = getattr(seen, "status", "unknown")
                raise WaitTimeout(f"{what} is still {status} after {timeout:g} s", seen)
            self._sleep(pause)
