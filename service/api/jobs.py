"""/v1/jobs: submit a job, read one, list your own."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from service.api.auth import current_client, require_client
from service.api.context import app_context
from service.api.schemas import JobListArgsSchema, JobPageSchema, JobRequestSchema, JobSchema
from service.jobs.index import InvalidCursor
from service.jobs.lookup import fetch_client_job, list_client_jobs
from service.jobs.resource import job_resource
from service.jobs.submit import submit_job

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Submit LLM jobs and read them back.")
blp.before_request(require_client)


@blp.before_request
def require_json_body() -> None:
    if request.method == "POST" and request.content_length and not request.is_json:
        abort(415, message="send the body as JSON with 'Content-Type: application/json'")


@blp.route("")
class JobCollection(MethodView):
    @blp.arguments(JobRequestSchema)
    @blp.response(202, JobSchema, headers={"Location": {"description": "The job's URL", "schema": {"type": "string"}}})
    def post(self, body: dict[str, Any]):
        """Queue an LLM job; answers at once with the job, status `queued`."""
        ctx = app_context()
        llm_request = {
            "model": body.get("model", ctx.settings.default_model),
            "max_tokens": body["max_tokens"],
            "messages": body["messages"],
            **{name: body[name] for name in ("system", "temperature") if name in body},
        }
        job = submit_job(
            ctx.redis,
            ctx.queues[body["priority"]],
            client=current_client(),
            request=llm_request,
            metadata=body["metadata"],
            timeout_s=body.get("timeout_s", ctx.settings.limits.max_timeout_s),
            result_ttl_s=ctx.settings.result_ttl_s,
        )
        resource = job_resource(job)
        return resource, 202, {"Location": resource["links"]["self"]}

    @blp.arguments(JobListArgsSchema, location="query")
    @blp.response(200, JobPageSchema)
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
        return {"data": [job_resource(job) for job in page.jobs], "next_cursor": page.next_cursor}


@blp.route("/<job_id>")
class JobItem(MethodView):
    @blp.response(200, JobSchema)
    def get(self, job_id: str):
        """One of your jobs."""
        job = fetch_client_job(app_context().redis, current_client(), job_id)
        if job is None:
            abort(404, message=f"no job {job_id!r}")
        return job_resource(job)
