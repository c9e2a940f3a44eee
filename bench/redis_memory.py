"""Redis memory per job, for sizing: what N finished jobs add to Redis, and what one job's keys hold.

    python -m bench.redis_memory --url http://127.0.0.1:8000 --key KEY --redis-url REDIS_URL \\
        [--jobs 1000] [--prompt-chars 1000] [--tokens 200]

Reads INFO memory's `used_memory`, submits --jobs jobs (a prompt of --prompt-chars characters,
a reply of --tokens tokens from the bundled fake server), waits until every one has ended
and their ends are published, then reads `used_memory` again: the difference over N is
what a finished job costs while it is kept (RESULT_TTL_S), shared structures (client index,
RQ registries, metrics) included. Then MEMORY USAGE of every key named after one of the
jobs. Run it on a stack of its own: other traffic in the same Redis changes the figure.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import redis
import requests

from bench.polling import wait_for_ends
from service.jobs.storage.keys import UNPUBLISHED_ENDS_KEY


def used_memory(connection: redis.Redis) -> int:
    return int(connection.info("memory")["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--prompt-chars", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    connection = redis.Redis.from_url(args.redis_url)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.key}"
    filler = ("lorem ipsum " * (args.prompt_chars // 12 + 1))[: args.prompt_chars]

    def submit(n: int) -> str:
        prompt = f"{filler} {n} [[fake: tokens={args.tokens} chunk_delay_ms=0]]"
        answer = session.post(f"{args.url}/v1/jobs", json={"prompt": prompt, "max_tokens": 2 * args.tokens}, timeout=30)
        answer.raise_for_status()
        return answer.json()["id"]

    before = used_memory(connection)
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(submit, range(args.jobs)))
    wait_for_ends(session, args.url, ids, interval_s=0.5)
    while connection.zcard(UNPUBLISHED_ENDS_KEY):  # ends still being published
        time.sleep(0.5)
    after = used_memory(connection)

    print(f"jobs: {args.jobs} (prompt {args.prompt_chars} chars, reply {args.tokens} tokens)")
    print(f"used_memory before: {before} B, after: {after} B")
    print(f"per finished job: {(after - before) / args.jobs:.0f} B")
    sample = ids[len(ids) // 2]
    total = 0
    for key in sorted(connection.scan_iter(match=f"*{sample}*", count=1000)):
        size = connection.memory_usage(key, samples=0) or 0
        total += size
        ttl = connection.ttl(key)
        print(f"  MEMORY USAGE {key.decode()}: {size} B ({connection.type(key).decode()}, TTL {ttl} s)")
    print(f"keys of one job: {total} B")


if __name__ == "__main__":
    main()
