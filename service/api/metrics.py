"""`GET /metrics`: Prometheus exposition of the counters every process keeps in Redis
(see `service.jobs.observability.metrics`) and of the queues' state; it needs no key, and with
METRICS_OPERATOR_AUTH on it needs the operator's basic-auth login."""

from __future__ import annotations

from flask import Response, request
from flask.views import MethodView
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from service.api.context import app_context
from service.api.json_body import Blueprint
from service.api.operator_auth import require_operator
from service.jobs.observability.metrics import RedisMetricsCollector
from service.jobs.storage.queues import ALL_QUEUES, make_queues

blp = Blueprint("metrics", __name__, description="Prometheus metrics.")


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(
        security=[],
        responses={"200": {"description": "Prometheus text format (OpenMetrics when the scraper asks for it).",
                           "content": {"text/plain": {"schema": {"type": "string"}}}}},
    )  # fmt: skip
    @blp.alt_response(401, description="Only with METRICS_OPERATOR_AUTH on: no operator basic-auth login.")
    def get(self):
        """Jobs submitted and finished, queue depths, running jobs, durations, queue waits,
        LLM tokens, cost and errors, retries and webhook deliveries, each budgeted client's share of its budget."""
        ctx = app_context()
        if ctx.settings.metrics_operator_auth:
            require_operator(ctx.settings)
        # Built per scrape (it holds no state): the figures live in Redis, not in this process.
        registry = CollectorRegistry(auto_describe=False)
        budgets = [
            (client, budget.limit_micro_usd, budget.window) for client, budget in ctx.settings.client_budgets.items()
        ]
        registry.register(RedisMetricsCollector(ctx.redis, make_queues(ctx.redis, ALL_QUEUES), budgets))
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(encode(registry), content_type=content_type)
