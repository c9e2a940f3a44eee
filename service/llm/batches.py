"""Anthropic's Message Batches API through the official async SDK: create a provider batch
of whole Messages requests, read its state, cancel it, find it again, and stream its
results (the SDK's JSONL decoder: one line at a time, never the whole file in memory).

Every failure is raised as an `LLMError` (service/llm/errors.py), sorted into retryable or
final like a Messages call's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anthropic
import httpx2
from anthropic.types.messages import MessageBatch

from service.llm.errors import LLMError, classify

# The provider's own bounds on one batch.
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
# What a result that is not `succeeded` means for its request. A canceled one was never
# answered (its batch was canceled): like an expired one, it may go into a later batch.
EXPIRED = LLMError("expired", "the provider batch ended (expired) before this request was answered", retryable=True)
CANCELED = LLMError("canceled", "the provider batch was canceled before this request was answered", retryable=True)
# An errored result's types worth another provider batch; the rest are final.
RETRYABLE_RESULT_TYPES = frozenset({"api_error", "overloaded_error", "rate_limit_error"})


@dataclass(frozen=True)
class ProviderBatch:
    id: str
    processing_status: str  # in_progress, canceling, ended
    created_at: datetime
    requests: int  # of every state

    @property
    def ended(self) -> bool:
        return self.processing_status == "ended"


@dataclass(frozen=True)
class BatchResult:
    """One request's outcome: its Message (succeeded), or why it has none."""

    custom_id: str
    message: dict[str, Any] | None
    error: LLMError | None


def _batch(raw: Any) -> ProviderBatch:
    counts = raw.request_counts
    total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
    return ProviderBatch(raw.id, raw.processing_status, raw.created_at, total)


class BatchesClient:
    """The Message Batches calls of one `AsyncAnthropic` (the worker's, its pool shared)."""

    def __init__(self, sdk: anthropic.AsyncAnthropic, *, timeout_s: float = 120.0):
        self._sdk = sdk
        self._batches = sdk.messages.batches
        self._timeout = httpx2.Timeout(timeout_s, connect=5.0)

    async def create(self, lines: list[bytes]) -> ProviderBatch:
        """Create one provider batch of requests, each `{"custom_id", "params"}` as JSON. Sent
        as the body they make, through the SDK's client (its key, base URL, errors): the
        typed `batches.create` would copy every request of a 10,000-request batch twice. It
        empties `lines`: the batch's JSON is held once while it is sent, not twice."""
        body = b'{"requests":[' + b",".join(lines) + b"]}"
        lines.clear()
        options: Any = {"headers": {"Content-Type": "application/json"}, "timeout": self._timeout}
        try:
            raw = await self._sdk.post("/v1/messages/batches", cast_to=MessageBatch, content=body, options=options)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise classify(exc) from exc
        return _batch(raw)

    async def retrieve(self, batch_id: str) -> ProviderBatch:
        try:
            return _batch(await self._batches.retrieve(batch_id, timeout=self._timeout))
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise classify(exc) from exc

    async def cancel(self, batch_id: str) -> ProviderBatch:
        try:
            return _batch(await self._batches.cancel(batch_id, timeout=self._timeout))
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise classify(exc) from exc

    async def made_since(self, anchor: str | None, floor: datetime, *, limit: int = 1000) -> list[ProviderBatch]:
        """The provider batches of this API key made after `anchor` (a batch id: the
        provider's own order, newest first, so no clock is compared) and not before `floor`,
        newest first; at most `limit`, page after page."""
        found: list[ProviderBatch] = []
        try:
            async for raw in self._batches.list(limit=100, timeout=self._timeout):
                if raw.id == anchor or raw.created_at < floor or len(found) >= limit:
                    break
                found.append(_batch(raw))
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise classify(exc) from exc
        return found

    async def results(self, batch_id: str) -> AsyncIterator[BatchResult]:
        """An ended batch's results, one line at a time, in the provider's order (any)."""
        try:
            decoder = await self._batches.results(batch_id, timeout=self._timeout)
            async for line in decoder:
                yield _result(line)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise classify(exc) from exc


def _result(line: Any) -> BatchResult:
    result = line.result
    if result.type == "succeeded":
        return BatchResult(line.custom_id, result.message.model_dump(mode="json", exclude_unset=True), None)
    if result.type == "errored":
        error = result.error.error
        message = error.message
        return BatchResult(
            line.custom_id, None, LLMError(error.type, message, retryable=error.type in RETRYABLE_RESULT_TYPES)
        )
    return BatchResult(line.custom_id, None, EXPIRED if result.type == "expired" else CANCELED)
