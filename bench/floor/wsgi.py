"""The floor of issue 11's submit bar: a Flask app that does the least a submit must.

It checks the bench's bearer key, parses the JSON body, writes one Redis pipeline (the job
as a hash, its id on a list) and answers 202 with the id: no validation, no limits, no RQ,
no logs. Run as the product under the bench's own gunicorn command (this folder has the
project's requirements.txt, so the bench's venv is the product's):

    PRODUCT_DIR=bench/floor ../shared/bench/compare.sh a
"""

from __future__ import annotations

import json
import os
import uuid

import redis
from flask import Flask, abort, jsonify, request

app = Flask(__name__)
store = redis.Redis.from_url(os.environ["REDIS_URL"])
BENCH_KEY = "Bearer key-alpha-7f3c9e21d4b8a605"  # the bench's adapters/product.json


@app.get("/healthz")
def healthz() -> dict[str, bool]:
    return {"ok": True}


@app.post("/v1/jobs")
def submit():
    if request.headers.get("Authorization") != BENCH_KEY:
        abort(401)
    job_id = uuid.uuid4().hex
    with store.pipeline() as pipe:
        pipe.hset(f"job:{job_id}", mapping={"body": json.dumps(request.get_json()), "status": "queued"})
        pipe.lpush("queue", job_id)
        pipe.execute()
    return jsonify(id=job_id, status="queued"), 202


@app.get("/v1/jobs/<job_id>")
def status(job_id: str):
    if request.headers.get("Authorization") != BENCH_KEY:
        abort(401)
    state = store.hget(f"job:{job_id}", "status")
    if state is None:
        abort(404)
    return jsonify(id=job_id, status=state.decode())
