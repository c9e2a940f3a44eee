"""A worker process's memory over many jobs: its RSS after each round of jobs has ended.

    python -m bench.worker_memory --url http://127.0.0.1:8000 --key KEY --worker-pid PID \\
        [--jobs 5000] [--round 500]

Submits `--round` jobs at a time, waits until every one has ended, then reads the
worker's VmRSS (it and its child processes) from /proc. Prints one line per round.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.polling import wait_for_ends
from tests.support.processes import process_tree


def rss_mib(pid: int) -> float:
    """VmRSS of `pid` and its descendants, in MiB."""
    total = 0
    for member in process_tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:  # ended meanwhile
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("VmRSS:"))
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--worker-pid", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--round", type=int, default=500)
    args = parser.parse_args()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.key}"

    def submit(n: int) -> str:
        body = {"prompt": f"memory job {n} [[fake: tokens=100 chunk_delay_ms=0]]", "max_tokens": 200}
        answer = session.post(f"{args.url}/v1/jobs", json=body, timeout=30)
        answer.raise_for_status()
        return answer.json()["id"]

    print(f"before: worker RSS {rss_mib(args.worker_pid):.1f} MiB")
    done = 0
    with ThreadPoolExecutor(16) as pool:
        while done < args.jobs:
            ids = list(pool.map(submit, range(done, done + args.round)))
            wait_for_ends(session, args.url, ids, interval_s=0.2)
            done += len(ids)
            print(f"after {done} jobs: worker RSS {rss_mib(args.worker_pid):.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
