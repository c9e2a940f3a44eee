"""Liveness and readiness probes; they need no key."""

from __future__ import annotations

import hashlib

from flask.views import MethodView
from marshmallow import Schema, fields
from webargs.flaskparser import abort  # what flask_smorest.abort is, with its NoReturn type

from service.api.context import app_context
from service.api.json_body import Blueprint
from service.jobs.operations import readiness as readiness_check

blp = Blueprint("health", __name__, description="Liveness and readiness probes.")


class RedisPrimarySchema(Schema):
    primary = fields.String(
        metadata={
            "description": "a fingerprint of the Redis this process uses (with Sentinel: the primary it last named; "
            "empty until it named one): equal across processes on the same primary. The address itself is in "
            "/metrics (llmjobs_redis_primary) and the log, not shown to an unauthenticated caller."
        }
    )
    sentinel = fields.Boolean(metadata={"description": "found through REDIS_SENTINELS"})
    failovers_seen = fields.Integer(metadata={"description": "times this process followed the primary to another"})


class ReadinessSchema(Schema):
    status = fields.String(metadata={"enum": ["ready"]})
    checks = fields.Dict(keys=fields.String(), values=fields.String())
    warnings = fields.List(fields.String())
    redis = fields.Nested(RedisPrimarySchema)


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
        report = readiness_check.readiness(ctx.redis, ctx.queues, min_replicas_ack=ctx.settings.redis_min_replicas_ack)
        details = {"checks": report.checks, "warnings": report.warnings, "redis": _primary(report)}
        if not report.ready:
            problems = "; ".join(f"{name}: {state}" for name, state in report.checks.items() if state != "ok")
            abort(503, message=f"not ready: {problems}", errors=details)
        return {"status": "ready", **details}


def _primary(report: readiness_check.Readiness) -> dict[str, object]:
    primary = report.primary
    assert primary is not None  # set by every readiness check
    fingerprint = hashlib.sha256(primary.address.encode()).hexdigest()[:12] if primary.address else ""
    return {"primary": fingerprint, "sentinel": primary.via_sentinel, "failovers_seen": primary.failovers_seen}
