"""Send one signed webhook (Standard Webhooks) and say what came of it."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from standardwebhooks import Webhook

from service.retry_after import parse_retry_after
from service.webhooks.addresses import CallbackPolicy, CallbackRefused

USER_AGENT = "llm-jobs-webhooks/1"
JITTER = 0.2  # each scheduled wait is moved by up to ±20 %


@dataclass(frozen=True)
class Outcome:
    delivered: bool  # any 2xx
    final: bool  # no point in trying again: delivered, 410 Gone, or the address is refused
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


def send(url: str, payload: str, *, webhook_id: str, secret: str, timeout_s: float, policy: CallbackPolicy) -> Outcome:
    """POST `payload` to `url`, signed with `secret`; redirects are not followed (a redirect
    could point anywhere, past the address check)."""
    try:
        policy.check(url)  # again now: the host's address may have changed since submit
    except CallbackRefused as exc:
        return Outcome(delivered=False, final=True, error=str(exc))
    timestamp = datetime.now(UTC)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, timestamp, payload),
    }
    try:
        response = requests.post(url, data=payload.encode(), headers=headers, timeout=timeout_s, allow_redirects=False)
    except requests.RequestException as exc:
        return Outcome(delivered=False, final=False, error=f"{type(exc).__name__}: {exc}")
    delivered = 200 <= response.status_code < 300
    return Outcome(
        delivered=delivered,
        final=delivered or response.status_code == 410,
        status_code=response.status_code,
        error=None if delivered else f"the receiver answered {response.status_code}",
        retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
    )


def next_wait_s(
    failed_attempts: int, schedule: tuple[float, ...], retry_after_s: float | None, rng: random.Random | None = None
) -> float | None:
    """The wait before the next attempt, or None when the schedule is used up."""
    if failed_attempts > len(schedule):
        return None
    scheduled = schedule[failed_attempts - 1] * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return max(scheduled, retry_after_s or 0.0)
