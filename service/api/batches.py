"""/v1/batches: submit many jobs in one request, and follow them as a whole."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

from service.api.auth import current_client, require_client
from service.api.context import app_context
from service.api.jobs import idempotency_claim, new_job_of, require_json_body
from service.api.json_body import Blueprint
from service.api.json_response import json_response
from service.api.limits import allowance_headers, limit_changes, submit_gate
from service.api.replication import REPLICATED_503, replicated
from service.api.schemas import BatchRequestSchema, BatchSchema, IdempotencyHeaderSchema
from service.jobs.push.batches import batch_resource, fetch_client_batch, redeliver_batch_webhook, submit_batch

blp = Blueprint(
    "batches", __name__, url_prefix="/v1/batches", description="Submit many jobs at once and follow them as a whole."
)
blp.before_request(require_client)
blp.before_request(require_json_body)
LOCATION = {"Location": {"description": "The batch's URL", "schema": {"type": "string"}}}


@blp.route("")
class BatchCollection(MethodView):
    @blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
    @blp.arguments(BatchRequestSchema)
    @blp.response(202, BatchSchema, headers=LOCATION, description="Every job queued.")
    @blp.alt_response(200, schema=BatchSchema, headers=LOCATION, description="The batch an earlier request with "
                      "the same Idempotency-Key and body created.")  # fmt: skip
    @blp.alt_response(409, description="The Idempotency-Key was used with another body.")
    @blp.alt_response(
        429,
        description="Over your submit limit (one batch counts once); see Retry-After."
        " Or over your spend budget (every job's worst case): `errors.type` is `budget_exceeded`.",
    )
    @blp.alt_response(503, description=REPLICATED_503)
    @replicated
    def post(self, body: dict[str, Any], idempotency_key: str | None = None):
        """Queue up to MAX_BATCH_JOBS jobs: all are validated first, then all are queued in one step."""
        ctx = app_context()
        settings = ctx.settings
        jobs = [new_job_of(job, settings) for job in body["jobs"]]
        submitted = submit_batch(
            ctx.redis,
            ctx.queues,
            jobs,
            gate=submit_gate(job.queue_name for job in jobs),
            max_attempts=settings.max_attempts,
            result_ttl_s=settings.result_ttl_s,
            metadata=body["metadata"],
            callback_url=body.get("callback_url"),
            idempotency=idempotency_claim(idempotency_key, body),
        )
        resource = batch_resource(ctx.redis, submitted.record, submitted.jobs)
        headers = {"Location": resource["links"]["self"], **allowance_headers(submitted.allowance)}
        return json_response(resource, 202 if submitted.created else 200, headers)


@blp.route("/<batch_id>")
class BatchItem(MethodView):
    @blp.response(200, BatchSchema)
    def get(self, batch_id: str):
        """One of your batches: its jobs' counts by status, and their ids."""
        return own_batch(batch_id)


@blp.route("/<batch_id>/webhook/redeliver")
class BatchWebhookRedelivery(MethodView):
    @limit_changes
    @blp.response(202, BatchSchema, description="The webhook is queued again, under the same `webhook-id`.")
    @blp.alt_response(409, description="The batch has no webhook to send (no callback_url, or not done yet), "
                      "or its webhook is pending.")  # fmt: skip
    @blp.alt_response(
        429, description="Over your CHANGE_RATE_LIMIT, or WEBHOOK_MAX_PENDING_PER_CLIENT; see the message."
    )
    def post(self, batch_id: str):
        """Send the done batch's webhook again (after the receiver was fixed, say)."""
        ctx = app_context()
        redis = ctx.redis
        record = own_batch_record(batch_id)
        if not redeliver_batch_webhook(redis, record, max_pending=ctx.settings.webhook_max_pending_per_client):
            abort(409, message="only a done batch with a callback_url has a webhook to send")
        return batch_resource(redis, record)


def own_batch(batch_id: str) -> dict[str, Any]:
    """The caller's batch resource, or a 404 (also for another client's batch)."""
    return batch_resource(app_context().redis, own_batch_record(batch_id))


def own_batch_record(batch_id: str) -> dict[str, str]:
    record = fetch_client_batch(app_context().redis, current_client(), batch_id)
    if record is None:
        abort(404, message=f"no batch {batch_id!r}")
    return record
