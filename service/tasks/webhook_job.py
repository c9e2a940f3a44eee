"""The RQ task that delivers one webhook attempt, and schedules the next on failure."""

from __future__ import annotations

from typing import Any

from rq import Retry
from rq.job import Job

from service.config import load_settings
from service.jobs.observability import metrics
from service.jobs.push.batches import batch_client, update_batch_delivery
from service.jobs.push.job_webhooks import DeliveryAttempt, job_client, update_delivery
from service.jobs.running.retry_policy import rq_retry
from service.jobs.storage.record import WebhookDeliveryState
from service.webhooks.delivery import Outcome, next_wait_s, send


def deliver_webhook(
    delivery: Job, job_id: str, webhook_id: str, url: str, payload: str, kind: str = "job"
) -> dict[str, Any] | Retry:
    """One attempt of the delivery job `delivery`; `job_id` names what the webhook is
    about: a job, or a batch when `kind` is "batch". Synchronous and free of process-wide
    state: the worker runs it in a thread and keeps its lease, so if the worker dies the
    scheduler re-queues it."""
    settings = load_settings()
    update = update_batch_delivery if kind == "batch" else update_delivery
    client = (batch_client if kind == "batch" else job_client)(delivery.connection, job_id)
    attempt = (delivery.number_of_retries or 0) + 1
    if client is None:  # expired: there is no one left to tell, nor a record to update
        outcome = Outcome(delivered=False, final=True, error=f"the {kind} no longer exists")
    else:
        secrets = settings.webhook_secrets_for(client)
        if not secrets:
            raise RuntimeError(
                f"no webhook secret for client {client!r} on this worker (WEBHOOK_SECRET, WEBHOOK_SECRETS)"
            )
        outcome = send(
            url, payload, webhook_id=webhook_id, secrets=secrets,
            timeout_s=settings.webhook_timeout_s, policy=settings.callback_policy,
        )  # fmt: skip
    record: DeliveryAttempt = {
        "attempts": attempt,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
    }
    wait = None if outcome.final else next_wait_s(attempt, settings.webhook_retry_schedule_s, outcome.retry_after_s)
    if wait is None:
        state: WebhookDeliveryState = (
            "delivered" if outcome.delivered else "gone" if outcome.status_code == 410 else "failed"
        )
        # Counted before the state shows: whoever sees "delivered" sees it counted too.
        metrics.WEBHOOK_DELIVERIES.inc(delivery.connection, kind=kind, outcome=state)
        update(delivery.connection, job_id, webhook_id, state=state, next_attempt_at=None, **record)
        return {"state": state, **record}
    retry, due_at = rq_retry(wait, max_retries=len(settings.webhook_retry_schedule_s))
    metrics.WEBHOOK_DELIVERIES.inc(delivery.connection, kind=kind, outcome="retrying")
    update(delivery.connection, job_id, webhook_id, state="pending", next_attempt_at=due_at, **record)
    return retry
