"""A budgeted client's jobs carry their worst-case cost, which admission reserves."""

from __future__ import annotations

import math
from typing import Any

from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

from service.api.auth import current_client
from service.api.context import app_context
from service.jobs.observability.budgets import MICRO
from service.jobs.observability.worst_case import Unpriceable, document_job_usd, message_job_usd
from service.jobs.storage.queues import DOCUMENT_TASK
from service.jobs.storage.record import Document, Tier
from service.llm.pricing import BATCH_DISCOUNT


def reservation_for(
    task: str, request: dict[str, Any], document: Document | None = None, *, tier: Tier = "standard"
) -> int:
    """What a job of the caller reserves against its spend budget, in micro-USD: its worst
    case, or 0 without a budget; a 422 for a model the price table cannot price (its cost has
    no bound)."""
    if current_client() not in app_context().settings.client_budgets:
        return 0
    return worst_case_micro_usd(task, request, document, tier=tier)


def worst_case_micro_usd(
    task: str, request: dict[str, Any], document: Document | None, *, tier: Tier = "standard"
) -> int:
    """The most one run of this job can cost, in micro-USD (a job stored earlier, too)."""
    settings = app_context().settings
    try:
        if task == DOCUMENT_TASK:
            assert document is not None
            usd = document_job_usd(
                request, media_type=document["media_type"], file_bytes=document["bytes"],
                chunk_tokens=settings.document_chunk_tokens, prices=settings.price_overrides,
            ) * (BATCH_DISCOUNT if tier == "batch" else 1)  # fmt: skip
        else:
            usd = message_job_usd(request, prices=settings.price_overrides, batch_tier=tier == "batch")
    except Unpriceable as exc:
        abort(422, message=str(exc), errors={"json": {exc.field: [str(exc)]}})
    return max(1, math.ceil(usd * MICRO))  # up: a bound stays a bound
