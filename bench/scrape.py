"""Time GET /metrics: `python -m bench.scrape --url http://127.0.0.1:8000 --scrapes 200`.

Scrapes one after another (as Prometheus does, one scrape per target at a time) and
prints the latency percentiles, the body size and the number of series."""

from __future__ import annotations

import argparse
import statistics
import time

import requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL of the API")
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    session = requests.Session()
    timings, body = [], ""
    for _ in range(args.scrapes):
        started = time.perf_counter()
        response = session.get(f"{args.url}/metrics", timeout=30)
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        body = response.text
    timings.sort()
    series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    print(
        f"{args.scrapes} scrapes: p50 {statistics.median(timings):.1f} ms, "
        f"p99 {timings[int(len(timings) * 0.99) - 1]:.1f} ms, max {timings[-1]:.1f} ms; "
        f"{len(body)} bytes, {series} samples"
    )


if __name__ == "__main__":
    main()
