"""/v1/jobs: submit a job, read one, list your own, cancel or retry one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request
from flask.views import MethodView
from rq.job import Job
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type
from werkzeug.exceptions import HTTPException

from service.api.auth import current_client, require_client
from service.api.budgets import reservation_for
from service.api.context import app_context
from service.api.json_body import Blueprint
from service.api.json_response import json_response, json_response_unless_unchanged
from service.api.limits import allowance_headers, limit_changes, limit_listing, submit_gate
from service.api.replication import REPLICATED_503, replicated
from service.api.schemas import IdempotencyHeaderSchema, JobListArgsSchema, JobPageSchema, JobRequestSchema, JobSchema
from service.config import Settings
from service.jobs.observability.budgets import release_jobs
from service.jobs.running.transitions import InvalidTransition, cancel_job, redeliver_webhook, rerun_job
from service.jobs.storage.admission import admit
from service.jobs.storage.idempotency import IdempotencyClaim
from service.jobs.storage.ids import new_job_id
from service.jobs.storage.index import InvalidCursor
from service.jobs.storage.lookup import fetch_client_job, list_client_jobs
from service.jobs.storage.queues import LLM_TASK
from service.jobs.storage.record import DOCUMENT, JobRecord, Tier
from service.jobs.storage.resource import job_resource
from service.jobs.storage.status import RUNNING, public_status
from service.jobs.storage.submit import NewJob, submit_job

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Submit LLM jobs and read them back.")
blp.before_request(require_client)
LOCATION = {"Location": {"description": "The job's URL", "schema": {"type": "string"}}}


@blp.before_request
def require_json_body() -> None:
    if request.method == "POST" and request.content_length and not request.is_json:
        abort(415, message="send the body as JSON with 'Content-Type: application/json'")


@blp.route("")
class JobCollection(MethodView):
    @blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
    @blp.arguments(JobRequestSchema)
    @blp.response(202, JobSchema, headers=LOCATION, description="Queued.")
    @blp.alt_response(200, schema=JobSchema, headers=LOCATION, description="The job an earlier request with the "
                      "same Idempotency-Key and body created.")  # fmt: skip
    @blp.alt_response(409, description="The Idempotency-Key was used with another body.")
    @blp.alt_response(429, description="Over your submit limit; see Retry-After and X-RateLimit-*. Or over your "
                      "spend budget (CLIENT_BUDGETS): `errors.type` is `budget_exceeded`, Retry-After is when its "
                      "window ends.")  # fmt: skip
    @blp.alt_response(503, description=REPLICATED_503)
    @replicated
    def post(self, body: dict[str, Any], idempotency_key: str | None = None):
        """Queue an LLM job; answers at once with the job, status `queued`."""
        ctx = app_context()
        new = new_job_of(body, ctx.settings)
        submitted = submit_job(
            ctx.redis,
            ctx.queues,
            new,
            gate=submit_gate([new.queue_name]),
            max_attempts=ctx.settings.max_attempts,
            result_ttl_s=ctx.settings.result_ttl_s,
            idempotency=idempotency_claim(idempotency_key, body),
        )
        resource = job_resource(submitted.job)
        headers = {"Location": resource["links"]["self"], **allowance_headers(submitted.allowance)}
        return json_response(resource, 202 if submitted.created else 200, headers)

    @blp.arguments(JobListArgsSchema, location="query")
    @blp.response(200, JobPageSchema)
    @blp.alt_response(429, description="Over your listing limit (LIST_RATE_LIMIT); see Retry-After.")
    @limit_listing
    def get(self, args: dict[str, Any]):
        """Your jobs, newest first; page with `limit` and `cursor`."""
        try:
            page = list_client_jobs(
                app_context().redis,
                current_client(),
                limit=args["limit"],
                cursor=args.get("cursor"),
                status=args.get("status"),
            )
        except InvalidCursor as exc:
            abort(422, message=str(exc), errors={"query": {"cursor": [str(exc)]}})
        return json_response({"data": [job_resource(job) for job in page.jobs], "next_cursor": page.next_cursor})


@blp.route("/<job_id>")
class JobItem(MethodView):
    @blp.response(
        200,
        JobSchema,
        headers={"ETag": {"description": "Send it back as If-None-Match.", "schema": {"type": "string"}}},
    )
    @blp.alt_response(304, description="Unchanged since the ETag sent as If-None-Match; no body.")
    def get(self, job_id: str):
        """One of your jobs. Poll it with `If-None-Match`: an unchanged job is a bodiless `304`."""
        # The resource is built in one place and is the schema's shape already: encoded once
        # here, it gives the ETag too (a poll of an unchanged job costs no body at all).
        return json_response_unless_unchanged(job_resource(own_job(job_id)))


@blp.route("/<job_id>/cancel")
class JobCancel(MethodView):
    @limit_changes
    @blp.response(200, JobSchema, description="Canceled.")
    @blp.alt_response(202, schema=JobSchema, description="Running: it stops within a second.")
    @blp.alt_response(409, description="The job has already finished, or another request is canceling it.")
    @blp.alt_response(429, description="Over your CHANGE_RATE_LIMIT; see Retry-After.")
    def post(self, job_id: str):
        """Cancel a queued job at once, or stop a running one (its partial text is kept)."""
        job = change_job(own_job(job_id), cancel_job)
        return job_resource(job), 202 if public_status(job) == RUNNING else 200


@blp.route("/<job_id>/retry")
class JobRetry(MethodView):
    @blp.response(202, JobSchema, description="Queued again.")
    @blp.alt_response(
        409,
        description="The job has not ended, or it succeeded (and is not a document job with failed steps), or "
        "another request is retrying it.",
    )
    @blp.alt_response(429, description="Over your submit limit (a retry counts as a submit), or your spend budget "
                      "(it reserves its worst case again); see Retry-After.")  # fmt: skip
    @blp.alt_response(503, description=REPLICATED_503)
    @replicated
    def post(self, job_id: str):
        """Run a failed or canceled job again, with a fresh deadline and attempt budget; a document job that
        succeeded with failed steps runs those steps again."""
        ctx = app_context()
        job = own_job(job_id)
        gate = submit_gate([job.origin])
        reservations = []
        if gate.budget is not None:  # the re-run reserves its worst case again (the last run's is released)
            record = JobRecord(job)
            document = record.document if record.kind == DOCUMENT else None
            amount = reservation_for(job.func_name or "", job.kwargs["request"], document, tier=record.tier)
            record.reservation_micro_usd = amount  # saved with the re-run
            reservations = [(job.id, amount)]
        admitted = admit(ctx.redis, gate, hit_id=new_job_id(), write=lambda _pipe: None, reservations=reservations)
        try:
            job = change_job(job, lambda job: rerun_job(job, max_attempts=ctx.settings.max_attempts))
        except HTTPException:
            if reservations:  # not re-run after all: what this request reserved goes back (not another's)
                release_jobs(ctx.redis, gate.client, dict(reservations))
            raise
        return json_response(job_resource(job), 202, allowance_headers(admitted.allowance))


@blp.route("/<job_id>/webhook/redeliver")
class WebhookRedeliver(MethodView):
    @limit_changes
    @blp.response(202, JobSchema, description="Queued: the same webhook id, the job as it is now.")
    @blp.alt_response(409, description="The job has not ended, has no callback_url, or its webhook is pending.")
    @blp.alt_response(
        429, description="Over your CHANGE_RATE_LIMIT, or WEBHOOK_MAX_PENDING_PER_CLIENT; see the message."
    )
    def post(self, job_id: str):
        """Send the job's webhook again (after the receiver was fixed, say)."""
        max_pending = app_context().settings.webhook_max_pending_per_client
        return job_resource(change_job(own_job(job_id), lambda job: redeliver_webhook(job, max_pending=max_pending)))


def idempotency_claim(key: str | None, body: dict[str, Any]) -> IdempotencyClaim | None:
    """The caller's claim on an `Idempotency-Key` for this (validated) body, if it sent one."""
    if key is None:
        return None
    return IdempotencyClaim.for_request(current_client(), key, body, app_context().settings.idempotency_ttl_s)


def new_job_of(body: dict[str, Any], settings: Settings) -> NewJob:
    """A validated job request (also each job of a batch): its Messages request as sent,
    the betas apart (the Message Batches API takes them on the batch, not in the params),
    and, for a budgeted client, its worst case to reserve."""
    request = dict(body["params"])
    betas = tuple(request.pop("betas", ()))
    return NewJob(
        priority=body["priority"],
        request=request,
        betas=betas,
        metadata=body["metadata"],
        timeout_s=body.get("timeout_s", default_timeout_s(body["tier"], settings)),
        callback_url=body.get("callback_url"),
        reservation_micro_usd=reservation_for(LLM_TASK, request, tier=body["tier"]),
        tier=body["tier"],
    )


def default_timeout_s(tier: Tier, settings: Settings) -> int:
    """A job's timeout_s when it gives none, which is also its largest."""
    return settings.batch_tier_timeout_s if tier == "batch" else settings.limits.max_timeout_s


def change_job(job: Job, change: Callable[[Job], None]) -> Job:
    """Apply a state change to the caller's job; 409 when its state does not allow it."""
    try:
        change(job)
    except InvalidTransition as exc:
        abort(409, message=str(exc))
    job.refresh()
    return job


def own_job(job_id: str) -> Job:
    """The caller's job, or a 404 (also for another client's job: ids are not disclosed)."""
    job = fetch_client_job(app_context().redis, current_client(), job_id)
    if job is None:
        abort(404, message=f"no job {job_id!r}")
    return job
