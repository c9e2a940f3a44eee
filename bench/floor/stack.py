"""The floor of the fixed stack (issue 28): the floor (the least a submit must: `wsgi.py`) with,
layer by layer, the parts of a submit that the libraries the product must use cost, and none
of the product's own work (no limits, no admission script, no idempotency, no budget, no job
resource, no metrics).

The route is a Flask blueprint's. FLOOR_LAYERS names the layers, comma-separated, any of:
- `validate`: the body loaded with the product's own JobRequestSchema (marshmallow), a 422 when
  it does not validate;
- `smorest`: the body read as the product reads it instead, by a flask-smorest blueprint (webargs
  around the same schema);
- `rq`: the job stored as the product stores it, an RQ job (`Queue.enqueue_many` on the
  pipeline, the product's `prepare_job`), instead of a bare hash;
- `log`: each request's access line as JSON, as the product's server writes it (granian's access
  logger and the product's formatter).

Run under granian with the product's processes and threads, each set of layers as the product:

    PRODUCT_API_CMD="FLOOR_LAYERS=validate,rq,log python stack.py" \\
        PRODUCT_DIR=bench/floor ../shared/bench/compare.sh a

(`python stack.py` serves on $API_PORT, the bench's port, like `python wsgi.py` does.)
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project, for its schema and storage

import flask
import redis
from flask import Flask, abort, jsonify, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint
from marshmallow import ValidationError

LAYERS = set(filter(None, os.environ.get("FLOOR_LAYERS", "").split(",")))
BENCH_KEY = "Bearer key-alpha-7f3c9e21d4b8a605"  # the bench's adapters/product.json

app = Flask(__name__)
store = redis.Redis.from_url(os.environ["REDIS_URL"])


def authorize() -> None:
    if request.headers.get("Authorization") != BENCH_KEY:
        abort(401)


def store_job(body: dict) -> str:
    """One pipeline: the job (a bare hash, or with `rq` an RQ job) and its id on a queue."""
    with store.pipeline() as pipe:
        if "rq" in LAYERS:
            job_id = enqueue_rq_job(pipe, body)
        else:
            job_id = uuid.uuid4().hex
            pipe.hset(f"job:{job_id}", mapping={"body": json.dumps(body), "status": "queued"})
            pipe.lpush("queue", job_id)
        pipe.execute()
    return job_id


if "rq" in LAYERS:
    from service.jobs.storage.queues import make_queues
    from service.jobs.storage.submit import NewJob, prepare_job

    QUEUE = make_queues(store)["default"]

    def enqueue_rq_job(pipe: redis.client.Pipeline, body: dict) -> str:
        params = body.get("params") or {"model": "claude-floor", "max_tokens": body["max_tokens"],
                                         "messages": [{"role": "user", "content": body["prompt"]}]}  # fmt: skip
        new = NewJob(priority="default", request=params, metadata=body.get("metadata", {}), timeout_s=600)
        data = prepare_job(new, client="alpha", max_attempts=3, result_ttl_s=86400)
        (job,) = QUEUE.enqueue_many([data], pipeline=pipe)
        return job.id


if LAYERS & {"validate", "smorest"}:
    from service.api.context import EXTENSION_KEY
    from service.api.schemas import JobRequestSchema
    from service.config import load_settings

    app.extensions[EXTENSION_KEY] = SimpleNamespace(settings=load_settings())  # what the schema reads

if "smorest" in LAYERS:
    app.config.update(API_TITLE="floor", API_VERSION="1", OPENAPI_VERSION="3.1.0")
    blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
    blp.before_request(authorize)

    @blp.route("")
    class Jobs(MethodView):
        @blp.arguments(JobRequestSchema)
        def post(self, body: dict):
            return jsonify(id=store_job(body), status="queued"), 202

    Api(app).register_blueprint(blp)
else:
    jobs = flask.Blueprint("jobs", __name__, url_prefix="/v1/jobs")
    jobs.before_request(authorize)
    schema = JobRequestSchema() if "validate" in LAYERS else None

    @jobs.post("")
    def submit():
        body = request.get_json()
        if schema is not None:
            try:
                body = schema.load(body)
            except ValidationError as exc:
                return jsonify(code=422, errors={"json": exc.messages}), 422
        return jsonify(id=store_job(body), status="queued"), 202

    app.register_blueprint(jobs)


@app.get("/healthz")
def healthz() -> dict[str, bool]:
    return {"ok": True}


@app.get("/v1/jobs/<job_id>")
def status(job_id: str):
    """A job's status as the floor's worker (worker.py) writes it: without the `rq` layer."""
    authorize()
    state = store.hget(f"job:{job_id}", "status")
    if state is None:
        abort(404)
    return jsonify(id=job_id, status=state.decode())


if __name__ == "__main__":
    from granian.constants import Interfaces
    from granian.server import Server

    from service.api.serve import ACCESS_FORMAT, _log_config

    Server(
        "stack:app",
        address="127.0.0.1",
        port=int(os.environ.get("API_PORT", "8090")),
        interface=Interfaces.WSGI,
        workers=2,
        blocking_threads=32,  # as the product's API_THREADS
        log_dictconfig=_log_config(1.0),
        log_access="log" in LAYERS,
        log_access_format=ACCESS_FORMAT,
    ).serve()
