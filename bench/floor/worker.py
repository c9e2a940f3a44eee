"""The floor of issue 10's case c: the least a worker must do for one LLM job.

It takes job ids from the list `wsgi.py` pushes to, up to WORKER_CONCURRENCY at once, asks
the fake Anthropic server for a streamed reply with a bare aiohttp client (no SDK, no RQ,
no progress, no event decoding), reads the reply to its end and marks the job succeeded.
Run with the floor API as the product:

    PRODUCT_DIR=bench/floor ../shared/bench/compare.sh c
"""

from __future__ import annotations

import asyncio
import json
import os

import aiohttp
import redis.asyncio


async def run_one(
    store: redis.asyncio.Redis, http: aiohttp.ClientSession, job_id: str, free: asyncio.Semaphore
) -> None:
    try:
        body = json.loads(await store.hget(f"job:{job_id}", "body"))
        request = {
            "model": "claude-floor",
            "max_tokens": body["max_tokens"],
            "stream": True,
            "messages": [{"role": "user", "content": body["prompt"]}],
        }
        url = os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages"
        headers = {"x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01"}
        async with http.post(url, json=request, headers=headers) as reply:
            async for _chunk in reply.content.iter_any():
                pass
            status = "succeeded" if reply.status == 200 else "failed"
        await store.hset(f"job:{job_id}", "status", status)
    finally:
        free.release()


async def main() -> None:
    store = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    slots = int(os.environ.get("WORKER_CONCURRENCY", "200"))
    free = asyncio.Semaphore(slots)
    tasks: set[asyncio.Task] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=slots)) as http:
        while True:
            await free.acquire()
            _queue, job_id = await store.brpop(["queue"])
            task = asyncio.create_task(run_one(store, http, job_id.decode(), free))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


if __name__ == "__main__":
    asyncio.run(main())
