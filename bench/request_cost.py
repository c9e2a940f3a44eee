"""The API's own CPU per `POST /v1/jobs` and per `GET /v1/jobs/{id}`, in-process.

Flask's test client against a Redis given by REDIS_URL (flushed first): 300 submits to warm
up, then ROUNDS rounds of N submits and N reads of them; prints the best round's
`time.process_time()` per request. No HTTP server, no load generator: it compares code,
not stacks (run it on two checkouts, one after the other). Then the same for a `params`
submit: two tools, a five-message conversation and an image of `--image-kb` KB (base64).

    REDIS_URL=redis://127.0.0.1:6998/0 .venv/bin/python -m bench.request_cost --n 3000

Set up as wsgi.py does: with OTEL_EXPORTER_OTLP_ENDPOINT set, every request is traced and
its spans exported (the exporter's thread is in this process, so its CPU is counted).
"""

from __future__ import annotations

import argparse
import base64
import os
import time
from typing import Any

API_KEY = "key-alpha-7f3c9e21d4b8a605"


def params_body(image_kb: int) -> dict[str, Any]:
    """A `params` job: two tools, a five-message conversation (a tool call and its result in
    it) and a PNG image."""
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(image_kb * 1024)).decode()
    weather = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [
        {"name": "get_weather", "description": "The weather in a city.", "input_schema": weather},
        {"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object"}},
    ]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Where was this taken?"}, image]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Paris"}]},
        {"role": "assistant", "content": "In Paris."},
        {"role": "user", "content": "And the weather there?"},
    ]
    return {"params": {"max_tokens": 1024, "tools": tools, "tool_choice": {"type": "auto"}, "messages": messages}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-kb", type=int, default=16, help="the params submit's image, KB before base64")
    args = parser.parse_args()
    os.environ.setdefault("API_KEYS", f"alpha={API_KEY}")
    os.environ.setdefault("RATE_LIMIT", "1000000/minute")
    from service.api.context import EXTENSION_KEY
    from service.app import create_app  # after the environment is set
    from service.config import load_settings
    from service.tracing import setup_tracing

    settings = load_settings(require_api_keys=True)
    setup_tracing("api", settings)
    app = create_app(settings)
    app.extensions[EXTENSION_KEY].redis.flushdb()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"prompt": "hello there", "max_tokens": 1024}
    for _ in range(300):
        client.post("/v1/jobs", json=body, headers=headers)
    best_post = best_get = float("inf")
    for _ in range(args.rounds):
        started = time.process_time()
        ids = [client.post("/v1/jobs", json=body, headers=headers).get_json()["id"] for _ in range(args.n)]
        best_post = min(best_post, (time.process_time() - started) / args.n)
        started = time.process_time()
        for job_id in ids:
            client.get(f"/v1/jobs/{job_id}", headers=headers)
        best_get = min(best_get, (time.process_time() - started) / args.n)
    print(f"POST /v1/jobs {best_post * 1e3:.3f} ms, GET /v1/jobs/{{id}} {best_get * 1e3:.3f} ms of CPU per request")
    params = params_body(args.image_kb)
    assert client.post("/v1/jobs", json=params, headers=headers).status_code == 202
    best_params = float("inf")
    for _ in range(args.rounds):
        started = time.process_time()
        for _ in range(args.n):
            client.post("/v1/jobs", json=params, headers=headers)
        best_params = min(best_params, (time.process_time() - started) / args.n)
    print(
        f"POST /v1/jobs with params (2 tools, 5 messages, a {args.image_kb} KB image) {best_params * 1e3:.3f} ms "
        f"of CPU per request: {best_params / best_post:.2f}x the prompt submit"
    )


if __name__ == "__main__":
    main()
