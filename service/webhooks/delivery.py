"""Send one signed webhook (Standard Webhooks) and say what came of it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx2
from opentelemetry.trace import SpanKind
from standardwebhooks import Webhook

from service import tracing
from service.retry_after import parse_retry_after
from service.webhooks.addresses import CallbackPolicy, CallbackRefused, CallbackTarget, IPAddress, parse_callback_url

USER_AGENT = "llm-jobs-webhooks/1"
JITTER = 0.2  # each scheduled wait is moved by up to ±20 %


@dataclass(frozen=True)
class Outcome:
    delivered: bool  # any 2xx
    final: bool  # no point in trying again: delivered, 410 Gone, or the address is refused
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


def send(
    url: str, payload: str, *, webhook_id: str, secrets: Sequence[str], timeout_s: float, policy: CallbackPolicy
) -> Outcome:
    """POST `payload` to `url`, signed with each of `secrets` (two during a rotation: the
    receiver accepts either signature).

    The address is checked again now (the host's answer may have changed since submit)
    and the request goes to exactly an address checked, never through a proxy from the
    environment, and is not redirected (a redirect could point anywhere). Only the status
    and headers of the answer are read (httpcore bounds those to 100 KiB); its body never is.
    """
    try:
        target = parse_callback_url(url)
        addresses = policy.admit(target)
    except CallbackRefused as exc:
        return Outcome(delivered=False, final=True, error=str(exc))
    timestamp = datetime.now(UTC)
    headers = {
        "Host": target.authority,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(Webhook(secret).sign(webhook_id, timestamp, payload) for secret in secrets),
    }
    body = payload.encode()
    # The receiver's request joins the job's trace: its span's context goes on as `traceparent`.
    # Its attributes name the receiver's host, never the URL's path or query (a token may be there).
    attributes = {"http.request.method": "POST", "server.address": target.host, "server.port": target.port}
    with (
        tracing.span("POST", kind=SpanKind.CLIENT, attributes=attributes) as request_span,
        httpx2.Client(trust_env=False, follow_redirects=False, timeout=timeout_s) as client,
    ):
        headers.update(tracing.current_carrier() or {})
        for address in addresses:  # the next one only when this one refuses the connection
            try:
                outcome = _outcome(_post(client, target, address, body, headers))
            except httpx2.ConnectError as exc:
                failure = exc
                continue
            except httpx2.HTTPError as exc:
                tracing.mark_failed(request_span, type(exc).__name__)
                return Outcome(delivered=False, final=False, error=f"{type(exc).__name__}: {exc}")
            if request_span is not None:
                request_span.set_attribute("http.response.status_code", outcome.status_code or 0)
                if not outcome.delivered:
                    tracing.mark_failed(request_span, str(outcome.status_code))
            return outcome
        tracing.mark_failed(request_span, type(failure).__name__)
    return Outcome(delivered=False, final=False, error=f"{type(failure).__name__}: {failure}")


def _post(
    client: httpx2.Client, target: CallbackTarget, address: IPAddress, body: bytes, headers: dict[str, str]
) -> httpx2.Response:
    host = f"[{address}]" if address.version == 6 else str(address)
    # TLS: the certificate is checked against the URL's name, which is also the SNI.
    extensions = {"sni_hostname": target.host} if target.scheme == "https" and target.ip_literal is None else {}
    request = client.build_request(
        "POST", f"{target.scheme}://{host}:{target.port}{target.target}", content=body, headers=headers,
        extensions=extensions,
    )  # fmt: skip
    response = client.send(request, stream=True)
    response.close()  # unread: a receiver cannot make us read an endless body
    return response


def _outcome(response: httpx2.Response) -> Outcome:
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
    """The wait before the next attempt, or None when the schedule is used up. A receiver's
    `Retry-After` (at most a day: `parse_retry_after`) may lengthen it."""
    if failed_attempts > len(schedule):
        return None
    scheduled = schedule[failed_attempts - 1] * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return max(scheduled, retry_after_s or 0.0)
