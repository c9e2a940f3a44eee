"""Count the Redis round trips the worker spends on N jobs, from dequeue to announced end.

Runs the real worker in this process against a Redis and an Anthropic server (the bundled
fake) given by REDIS_URL / ANTHROPIC_BASE_URL, and counts every command or pipeline sent
(redis-py's `send_packed_command`, sync and asyncio). The database is flushed first.

    REDIS_URL=redis://127.0.0.1:6998/0 ANTHROPIC_API_KEY=x ANTHROPIC_BASE_URL=http://127.0.0.1:8799 \\
        .venv/bin/python -m bench.round_trips 100
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

import redis.asyncio.connection
import redis.connection
from redis import Redis

from service.config import load_settings
from service.jobs.storage.admission import Gate
from service.jobs.storage.queues import make_queues
from service.jobs.storage.submit import NewJob, submit_job
from service.worker.async_worker import AsyncWorker

sent: Counter[str] = Counter()


def _count(cls: type, kind: str, is_async: bool) -> None:
    original = cls.send_packed_command

    if is_async:

        async def counting_async(self, command, check_health=True):
            sent[kind] += 1
            return await original(self, command, check_health)

        cls.send_packed_command = counting_async
    else:

        def counting(self, command, check_health=True):
            sent[kind] += 1
            return original(self, command, check_health)

        cls.send_packed_command = counting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", type=int)
    args = parser.parse_args()
    _count(redis.connection.AbstractConnection, "sync", is_async=False)
    _count(redis.asyncio.connection.AbstractConnection, "asyncio", is_async=True)
    settings = load_settings(require_llm_key=True)
    connection = Redis.from_url(settings.redis_url)
    connection.flushdb()
    request = {
        "model": settings.default_model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi [[fake: tokens=16 chunk_delay_ms=0]]"}],
    }
    queues = make_queues(connection)
    for _ in range(args.jobs):
        submit_job(connection, queues, NewJob("default", request, {}, 60), gate=Gate.unlimited("bench"), max_attempts=3,
                   result_ttl_s=600)  # fmt: skip
    worker = AsyncWorker(settings, ["high", "default", "low"])

    async def run() -> None:
        await worker._until_registered()
        sent.clear()  # from here: dequeue to end, plus the worker's own ticks meanwhile
        running = asyncio.create_task(worker.run())
        while connection.zcard(queues["default"].finished_job_registry.key) < args.jobs:
            await asyncio.sleep(0.01)
        counted = dict(sent)
        worker.stopping.set()
        await running
        total = sum(counted.values())
        print(f"{args.jobs} jobs: {counted} = {total} round trips, {total / args.jobs:.1f} per job")

    asyncio.run(run())


if __name__ == "__main__":
    main()
