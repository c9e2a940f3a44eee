"""Liveness and readiness probes; they need no key."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

from service.api.context import app_context
from service.api.json_body import Blueprint
from service.jobs.operations.readiness import readiness

blp = Blueprint("health", __name__, description="Liveness and readiness probes.")


class ReadinessSchema(Schema):
    status = fields.String(metadata={"enum": ["ready"]})
    checks = fields.Dict(keys=fields.String(), values=fields.String())
    warnings = fields.List(fields.String())


@blp.route("/healthz")
class Liveness(MethodView):
    @blp.doc(security=[])
    @blp.response(200, Schema.from_dict({"status": fields.String()}))
    def get(self):
        """The process answers."""
        return {"status": "ok"}


@blp.route("/readyz")
class Readiness(MethodView):
    @blp.doc(security=[])
    @blp.response(200, ReadinessSchema)
    @blp.alt_response(503, description="Not ready: `errors.checks` says what is missing.")
    def get(self):
        """Redis reachable and a worker with a fresh heartbeat on every queue."""
        ctx = app_context()
        report = readiness(ctx.redis, ctx.queues)
        if not report.ready:
            problems = "; ".join(f"{name}: {state}" for name, state in report.checks.items() if state != "ok")
            abort(503, message=f"not ready: {problems}", errors={"checks": report.checks, "warnings": report.warnings})
        return {"status": "ready", "checks": report.checks, "warnings": report.warnings}
