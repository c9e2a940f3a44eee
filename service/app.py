"""The Flask application factory."""

from __future__ import annotations

import threading

from flask import Flask

from service.api import batches, docs, documents, events, health, jobs, metrics, usage
from service.api.context import EXTENSION_KEY, AppContext
from service.api.dashboard import mount_dashboard
from service.api.errors import JsonErrorApi, register_error_handlers
from service.api.limits import init_limits
from service.api.openapi import document_request_rules
from service.api.request_limits import init_request_limits
from service.api.telemetry import init_telemetry
from service.config import Settings, load_settings
from service.jobs.storage.connection import api_connection
from service.jobs.storage.queues import BATCH_QUEUE, PRIORITIES, WEBHOOK_QUEUE, make_queues


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings(require_api_keys=True)
    app = Flask(__name__)
    init_telemetry(app)  # its request hooks go first (none when tracing and bug reports are off)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.limits.max_body_bytes,
        API_TITLE="LLM job service",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=docs.SWAGGER_UI_URL,  # served by docs.blp below, not a CDN
    )
    redis = api_connection(settings)
    app.extensions[EXTENSION_KEY] = AppContext(
        settings=settings,
        redis=redis,
        # With webhooks on, /readyz also wants a worker on their queue.
        queues=make_queues(redis, (*PRIORITIES, BATCH_QUEUE) + ((WEBHOOK_QUEUE,) if settings.webhooks_on else ())),
        stream_slots=threading.BoundedSemaphore(settings.sse_max_streams),
    )

    api = JsonErrorApi(app)
    spec = api.spec
    assert spec is not None  # made by Api(app)
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.options["security"] = [{"bearerAuth": []}]
    register_error_handlers(app, api)
    init_limits(app, settings, redis)
    init_request_limits(app)  # after init_limits: its check goes first
    api.register_blueprint(jobs.blp)
    api.register_blueprint(events.blp)
    api.register_blueprint(health.blp)
    api.register_blueprint(usage.blp)
    api.register_blueprint(batches.blp)
    api.register_blueprint(documents.blp)
    api.register_blueprint(metrics.blp)
    app.register_blueprint(docs.blp)
    document_request_rules(spec, settings)
    mount_dashboard(app, settings, redis)  # operators only; off unless DASHBOARD_* are set
    return app
