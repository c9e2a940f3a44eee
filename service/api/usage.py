"""/v1/usage: your tokens and cost, from counters kept as jobs complete."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from service.api.auth import current_client, require_client
from service.api.context import app_context
from service.api.json_body import Blueprint
from service.api.schemas import UsageArgsSchema, UsageReportSchema
from service.jobs.observability.budgets import budget_report
from service.jobs.observability.usage import usage_report, usage_total

blp = Blueprint("usage", __name__, url_prefix="/v1/usage", description="Tokens and cost of your completed jobs.")
blp.before_request(require_client)


@blp.route("")
class Usage(MethodView):
    @blp.arguments(UsageArgsSchema, location="query")
    @blp.response(200, UsageReportSchema)
    def get(self, args: dict[str, Any]):
        """Your usage per UTC day, model or client (yourself), counted once per completed job; and
        your spend budget now (`budget`: spent, reserved by running jobs, remaining)."""
        ctx, client = app_context(), current_client()
        rows = usage_report(ctx.redis, client, args["date_from"], args["date_to"], args["group_by"])
        budget = ctx.settings.client_budgets.get(client)
        report = None if budget is None else budget_report(ctx.redis, client, budget.limit_micro_usd, budget.window)
        return {**args, "data": rows, "total": usage_total(rows), "budget": report}
