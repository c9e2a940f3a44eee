"""A 429 storm at the provider while jobs wait: how many calls reach it, and how soon
the jobs finish once it ends. Talks HTTP to a running stack and its bundled fake.

    python -m bench.storm --url http://127.0.0.1:8000 --key KEY --fake http://127.0.0.1:8765 \\
        [--jobs 200] [--storm-s 10] [--retry-after 2]

The storm starts first (every call answered 429 with `retry-after`), then the jobs are
submitted, so they all wait through it. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.polling import epoch_s, wait_for_ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--fake", required=True, help="base URL of the bundled fake Anthropic server")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--storm-s", type=int, default=10)
    parser.add_argument("--retry-after", type=int, default=2)
    args = parser.parse_args()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.key}"
    storm = {"seconds": args.storm_s, "retry_after": args.retry_after, "status": 429}  # whole seconds
    requests.post(f"{args.fake}/_fake/storm", json=storm, timeout=10).raise_for_status()

    def submit(n: int) -> str:
        body = {"prompt": f"storm job {n} [[fake: tokens=16 chunk_delay_ms=0]]", "max_tokens": 64}
        answer = session.post(f"{args.url}/v1/jobs", json=body, timeout=30)
        answer.raise_for_status()
        return answer.json()["id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(submit, range(args.jobs)))
    jobs = wait_for_ends(session, args.url, ids, interval_s=0.2, deadline=time.time() + args.storm_s + 120)
    seen = requests.get(f"{args.fake}/_fake/storm", timeout=10).json()
    storm_end = seen["ends"]
    last_end = max(epoch_s(j["finished_at"]) for j in jobs.values())
    print(
        json.dumps(
            {
                "jobs": args.jobs,
                "outcomes": Counter(j["status"] for j in jobs.values()),
                "unfinished": len(ids) - len(jobs),
                "attempts": Counter(j["attempts"] for j in jobs.values()),
                "storm_s": args.storm_s,
                "calls_during_storm": seen["requests"],
                "calls_per_storm_second": round(seen["requests"] / args.storm_s, 2),
                "most_calls_in_one_second": max(seen["per_second"], default=0),
                "last_job_finished_after_storm_end_s": round(last_end - storm_end, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
