"""rq-dashboard at /dashboard/, for operators: behind HTTP basic auth, exempt from the
client rate limits, reading our JSON-serialized jobs, and guarded against stored XSS and
cross-site requests (`service.api.dashboard_guard`).

Off unless DASHBOARD_USERNAME and DASHBOARD_PASSWORD are set: then /dashboard/ is a 404
like any unknown route.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import rq_dashboard
import rq_dashboard.web
from flask import Flask, Response, request
from redis import Redis
from rq import Queue, Worker, requeue_job
from rq.job import Job

from service.api import dashboard_guard as guard
from service.api.limits import limiter
from service.api.operator_auth import require_operator
from service.config import Settings
from service.jobs.storage.queues import ALL_QUEUES, SERIALIZER, ReadTolerantJSONSerializer

URL_PREFIX = "/dashboard"


class _JsonJob(Job):
    """A Job that reads our JSON serializer unless told otherwise."""

    @classmethod
    def fetch(cls, id: str, connection: Any = None, serializer: Any = None) -> Job:
        return super().fetch(id, connection=connection, serializer=serializer or SERIALIZER)


class _JsonQueue(Queue):
    """Queues read with our JSON serializer; `all()` lists ours even before their first job."""

    @classmethod
    def all(cls, connection: Any, *args: Any, **kwargs: Any) -> list:
        kwargs["serializer"] = kwargs.get("serializer") or SERIALIZER
        found = super().all(connection, *args, **kwargs)
        seen = {queue.name for queue in found}
        ours = [cls(name, connection=connection, serializer=SERIALIZER) for name in ALL_QUEUES if name not in seen]
        return found + ours


class _JsonWorker(Worker):
    """Workers whose current job is read with our JSON serializer."""

    @classmethod
    def all(cls, *args: Any, **kwargs: Any) -> list:
        kwargs["serializer"] = kwargs.get("serializer") or SERIALIZER
        return super().all(*args, **kwargs)


def _use_json_serializer() -> None:
    """rq-dashboard 0.9 reads jobs with pickle unless told otherwise. Its `config.serializer`
    (the CLI's --serializer) covers its queue and registry views; the views that call
    `Job.fetch`, `requeue_job`, `Queue.all` or `Worker.all` without a serializer (job page,
    requeue, delete, queues, workers) get JSON-defaulting stand-ins for those names in its
    module."""
    web = rq_dashboard.web
    # A job another tool pickled still has a page. (rq-dashboard, untyped, declares the
    # attribute by assigning RQ's DefaultSerializer class, so pyright takes that class as its type.)
    web.config.serializer = ReadTolerantJSONSerializer  # pyright: ignore[reportAttributeAccessIssue]
    web.Job = _JsonJob
    web.Queue = _JsonQueue
    web.Worker = _JsonWorker
    web.requeue_job = partial(requeue_job, serializer=SERIALIZER)


def _use_connection(redis: Redis) -> None:
    """rq-dashboard opens a client of its own from its URL on every request (and knows no
    Sentinel but through a URL scheme of another package): it gets the API's, which follows
    the primary and has its bounded timeouts."""
    rq_dashboard.web.from_url = lambda *_args, **_kwargs: (None, redis)


def mount_dashboard(app: Flask, settings: Settings, redis: Redis) -> None:
    if settings.dashboard_username is None or settings.dashboard_password is None:
        return
    _use_json_serializer()
    _use_connection(redis)
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    rq_dashboard.web.setup_rq_connection(app)
    loader = app.jinja_env.loader
    assert loader is not None  # Flask's environment always has its dispatching loader
    app.jinja_env.loader = guard.PatchedDashboardTemplates(loader)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
    # On the app, keyed by the blueprint, and first: the blueprint is a module global that
    # Flask will not let us change once registered, and its own hook opens connections.
    app.before_request_funcs.setdefault(rq_dashboard.blueprint.name, [])[0:0] = [
        guard.issue_csp_nonce,
        partial(require_operator, settings),
        guard.refuse_cross_site_actions,
    ]
    app.after_request_funcs.setdefault(rq_dashboard.blueprint.name, []).append(guard.escape_json_answer)

    @app.after_request
    def dashboard_headers(response: Response) -> Response:
        # Every answer under /dashboard, the 401s and 404s too, not only the blueprint's own.
        if request.path == URL_PREFIX or request.path.startswith(URL_PREFIX + "/"):
            guard.add_security_headers(response)
        return response

    limiter.exempt(rq_dashboard.blueprint)
