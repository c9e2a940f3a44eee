"""The asynchronous client: `AsyncJobsClient`, the calls of `JobsClient`, awaited.

async with AsyncJobsClient() as jobs:          # LLMJOBS_URL, LLMJOBS_API_KEY
    job = await jobs.submit("Write a haiku about queues")
    async for event in jobs.stream(job.id):
        ...
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import date
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from llmjobs import _base
from llmjobs._base import Call
from llmjobs.errors import APIError, WaitTimeout, connection_error, error_from_response
from llmjobs.types import Batch, Event, Job, JobPage, UsageReport

T = TypeVar("T")


class AsyncJobsClient:
    """The job API over HTTP, for asyncio; the settings are those of `JobsClient`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = _base.DEFAULT_TIMEOUT_S,
        max_retries: int = _base.DEFAULT_MAX_RETRIES,
        reconnect_timeout: float = _base.DEFAULT_RECONNECT_TIMEOUT_S,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url, api_key = _base.settings(base_url, api_key)
        self.timeout = timeout
        self.max_retries = max_retries
        self.reconnect_timeout = reconnect_timeout
        self._own_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()
        self._headers = _base.default_headers(api_key)
        self._sleep = sleep
        self._clock = clock
        self._jobs = _base.JobCache()

    async def __aenter__(self) -> AsyncJobsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()

    def __repr__(self) -> str:
        return f"AsyncJobsClient({self.base_url!r})"

    # ---- jobs

    async def submit(
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
        """See `JobsClient.submit`."""
        body = _base.job_request(
            prompt=prompt, messages=messages, params=params, system=system, model=model, max_tokens=max_tokens,
            priority=priority, tier=tier, metadata=metadata, timeout_s=timeout_s,
            callback_url=callback_url,
        )  # fmt: skip
        return await self._call(_base.submit_call(body, idempotency_key, timeout))

    async def analyze(
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
        """See `JobsClient.analyze`."""
        options = _base.analyze_options(
            analyses, extraction=extraction, model=model, max_tokens=max_tokens, priority=priority,
            metadata=metadata, timeout_s=timeout_s, callback_url=callback_url,
        )  # fmt: skip
        return await self._call(_base.analyze_call(path, options, idempotency_key, timeout))

    async def get(self, job_id: str, *, timeout: float | None = None) -> Job:
        return await self._call(self._jobs.get_call(job_id, timeout))

    async def list(
        self,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        *,
        timeout: float | None = None,
    ) -> JobPage:
        return await self._call(_base.list_call(status, limit, cursor, timeout))

    async def cancel(self, job_id: str, *, timeout: float | None = None) -> Job:
        return await self._call(_base.job_change_call(job_id, "cancel", timeout))

    async def retry(self, job_id: str, *, timeout: float | None = None) -> Job:
        return await self._call(_base.job_change_call(job_id, "retry", timeout))

    async def redeliver_webhook(self, job_id: str, *, timeout: float | None = None) -> Job:
        return await self._call(_base.job_change_call(job_id, "webhook/redeliver", timeout))

    async def wait(self, job_id: str, timeout: float = 600.0, *, on_update: Callable[[Job], None] | None = None) -> Job:
        return await self._wait(lambda: self.get(job_id), f"job {job_id}", timeout, on_update)

    # ---- batches

    async def submit_batch(
        self,
        jobs: Sequence[str | Mapping[str, Any]],
        *,
        metadata: Mapping[str, str] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Batch:
        return await self._call(_base.submit_batch_call(jobs, metadata, callback_url, idempotency_key, timeout))

    async def get_batch(self, batch_id: str, *, timeout: float | None = None) -> Batch:
        return await self._call(_base.get_batch_call(batch_id, timeout))

    async def redeliver_batch_webhook(self, batch_id: str, *, timeout: float | None = None) -> Batch:
        return await self._call(_base.redeliver_batch_call(batch_id, timeout))

    async def wait_batch(
        self, batch_id: str, timeout: float = 600.0, *, on_update: Callable[[Batch], None] | None = None
    ) -> Batch:
        return await self._wait(lambda: self.get_batch(batch_id), f"batch {batch_id}", timeout, on_update)

    # ---- usage

    async def usage(
        self,
        date_from: date | str | None = None,
        date_to: date | str | None = None,
        group_by: str | None = None,
        *,
        timeout: float | None = None,
    ) -> UsageReport:
        return await self._call(_base.usage_call(date_from, date_to, group_by, timeout))

    # ---- streaming

    async def stream(self, job_id: str, last_event_id: str | None = None) -> AsyncIterator[Event]:
        """See `JobsClient.stream`."""
        reconnects = _base.Reconnects(self.reconnect_timeout, self._clock())
        while True:
            path, headers = _base.stream_request(job_id, last_event_id)
            retry_after = None
            try:
                async with self._http.stream(
                    "GET", self.base_url + path, headers={**self._headers, **headers, "Accept": "text/event-stream"},
                    timeout=_base.stream_timeout(self.timeout),
                ) as response:  # fmt: skip
                    if response.is_error:
                        await response.aread()
                        error = error_from_response(response)
                        if error.status_code not in _base.RETRY_STATUSES:
                            raise error
                        problem, retry_after = str(error), error.retry_after
                    else:
                        reconnects.worked(self._clock())
                        async for sse in EventSource(response).aiter_sse():
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
            await self._sleep(reconnects.pause(self._clock(), problem, retry_after))

    # ---- plumbing

    async def _call(self, call: Call[T]) -> T:
        retries = 0
        while True:
            try:
                return call.parse(await self._send(call))
            except APIError as error:
                pause = _base.retry_pause(call, error, retries, self.max_retries)
                if pause is None:
                    raise
            retries += 1
            await self._sleep(pause)

    async def _send(self, call: Call[Any]) -> httpx.Response:
        try:
            response = await self._http.request(
                call.method, self.base_url + call.path, json=call.json, params=call.params, files=call.files,
                headers={**self._headers, **call.headers},
                timeout=call.timeout if call.timeout is not None else self.timeout,
            )  # fmt: skip
        except httpx.TransportError as exc:
            raise connection_error(exc, self.base_url) from exc
        return _base.check(response)

    async def _wait(
        self, fetch: Callable[[], Awaitable[T]], what: str, timeout: float, on_update: Callable[[T], None] | None
    ) -> T:
        schedule = _base.WaitSchedule(timeout, self._clock())
        seen: T | None = None
        while True:
            retry_after = None
            try:
                seen = await fetch()
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
            await self._sleep(pause)
