"""The RQ task that delivers one webhook attempt, and schedules the next on failure."""

from __future__ import annotations

from typing import Any

from rq import Retry
from rq.job import Job

from service.config import load_settings
from service.jobs import metrics
from service.jobs.batches import update_batch_delivery
from service.jobs.deliveries import update_delivery
from service.jobs.retry_policy import rq_retry
from service.webhooks.delivery import next_wait_s, send


def deliver_webhook(
    delivery: Job, job_id: str, webhook_id: str, url: str, payload: str, kind: str = "job"
) -> dict[str, Any] | Retry:
    """One attempt of the delivery job `delivery`; `job_id` names what the webhook is
    about: a job, or a batch when `kind` is "batch". Runs in a worker thread; the worker
    keeps its lease, so if the worker dies the scheduler re-queues it."""
    settings = load_settings()
    if settings.webhook_secret is None:
        raise RuntimeError("WEBHOOK_SECRET is not set on this worker: webhooks cannot be signed")
    update = update_batch_delivery if kind == "batch" else update_delivery
    attempt = (delivery.number_of_retries or 0) + 1
    outcome = send(
        url, payload, webhook_id=webhook_id, secret=settings.webhook_secret,
        timeout_s=settings.webhook_timeout_s, policy=settings.callback_policy,
    )  # fmt: skip
    record = {"attempts": attempt, "last_status_code": outcome.status_code, "last_error": outcome.error}
    wait = None if outcome.final else next_wait_s(attempt, settings.webhook_retry_schedule_s, outcome.retry_after_s)
    if wait is None:
        state = "delivered" if outcome.delivered else "gone" if outcome.status_code == 410 else "failed"
        update(delivery.connection, job_id, webhook_id, state=state, next_attempt_at=None, **record)
        metrics.WEBHOOK_DELIVERIES.inc(delivery.connection, kind=kind, outcome=state)
        return {"state": state, **record}
    retry, due_at = rq_retry(wait, max_retries=len(settings.webhook_retry_schedule_s))
    update(delivery.connection, job_id, webhook_id, state="pending", next_attempt_at=due_at, **record)
    metrics.WEBHOOK_DELIVERIES.inc(delivery.connection, kind=kind, outcome="retrying")
    return retry
