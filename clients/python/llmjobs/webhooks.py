"""Receiving the service's webhooks: `verify_webhook` checks the Standard Webhooks
signature and returns the payload."""

from __future__ import annotations

import json
from collections.abc import Mapping

import standardwebhooks

from llmjobs.types import WebhookEvent


class WebhookVerificationError(standardwebhooks.WebhookVerificationError):
    """The webhook's signature, timestamp or headers are wrong (a standardwebhooks error too)."""


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> WebhookEvent:
    """Check a webhook's signature and return its payload: `type` (`job.succeeded`,
    `job.failed`, `job.canceled` or `batch.done`), `timestamp` (when that happened) and
    `data` (the `Job` or `Batch`; its JSON in `.raw`).

    `body` must be the raw request body, unparsed; `headers` any mapping holding
    `webhook-id`, `webhook-timestamp` and `webhook-signature` (case does not matter);
    `secret` is the client's webhook secret (`whsec_...`). Raises
    `WebhookVerificationError` when a header is missing or malformed, the signature does
    not match, or the timestamp is more than 5 minutes away from now (a replay).
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
    return WebhookEvent.from_dict(json.loads(text))
