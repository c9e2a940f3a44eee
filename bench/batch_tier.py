"""The batch tier against the standard tier: N jobs submitted in a burst, each tier on a
stack of its own (redis-server, the bundled fake, gunicorn, one worker.py), same request.

    python -m bench.batch_tier [--jobs 10000] [--batch-delay-ms 5000] [--tiers batch,standard]

Per tier: whether every job succeeded, the provider batches created and the /v1/messages
calls (the fake's /_stats), cost per job (/v1/usage), the worker's peak RSS and Redis's
peak used_memory over their levels before the submit, per job, and for the batch tier the
time from the provider batch's end (its `ended_at`) to the last job's end. One JSON line
per tier on stdout, a table on stderr. Submits go through `POST /v1/batches` (100 jobs per
request, 8 threads), so the submit limit is no bound.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import redis
import requests

from bench.worker_memory import rss_mib

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEY = "bench-key-0123456789abcdef"
PROMPT = "Classify this ticket: the invoice PDF is blank. [[fake: tokens=16]]"
MODEL = "claude-haiku-4-5"


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except (requests.RequestException, redis.RedisError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


class Stack:
    """redis-server, the fake, gunicorn and one worker, in a directory of their own."""

    def __init__(self, directory: Path, batch_delay_ms: int):
        self.directory = directory
        self.processes: list[subprocess.Popen] = []
        self.redis_port, self.fake_port, self.api_port = free_port(), free_port(), free_port()
        self.fake = f"http://127.0.0.1:{self.fake_port}"
        self.api = f"http://127.0.0.1:{self.api_port}"
        redis_server = shutil.which("redis-server")
        assert redis_server, "redis-server is not installed"
        self._start("redis", [redis_server, "--port", str(self.redis_port), "--save", "", "--dir", str(directory)])
        self.redis = redis.Redis(port=self.redis_port)
        wait_until(self.redis.ping, 30, "redis-server")
        self._start("fake", [sys.executable, "-m", "fake_anthropic", "--port", str(self.fake_port),
                             "--chunk-delay-ms", "1", "--batch-delay-ms", str(batch_delay_ms)])  # fmt: skip
        wait_until(lambda: requests.get(f"{self.fake}/healthz", timeout=1).ok, 30, "the fake")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "RQ_"))},
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "API_KEYS": f"bench={KEY}",
            "ANTHROPIC_API_KEY": "bench", "ANTHROPIC_BASE_URL": self.fake, "QUEUE_MAX_DEPTH": "0",
            "WEB_CONCURRENCY": "2", "WORKER_CONCURRENCY": "200", "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        self._start("api", [str(BIN / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{self.api_port}"])
        wait_until(lambda: requests.get(f"{self.api}/healthz", timeout=1).ok, 60, "the API")
        self.worker = self._start("worker", [sys.executable, "worker.py"])
        wait_until(lambda: self.redis.scard("rq:workers"), 60, "the worker")

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.directory / f"{name}.log").open("wb")
        env = getattr(self, "env", None)
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)


def submit_all(api: str, jobs: int, tier: str) -> tuple[list[str], float]:
    body = {"prompt": PROMPT, "model": MODEL, "tier": tier}
    session = requests.Session()

    def post(count: int) -> list[str]:
        answer = session.post(f"{api}/v1/batches", json={"jobs": [body] * count},
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=60)  # fmt: skip
        answer.raise_for_status()
        return answer.json()["job_ids"]

    sizes = [min(100, jobs - start) for start in range(0, jobs, 100)]
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        ids = [job_id for chunk in pool.map(post, sizes) for job_id in chunk]
    return ids, time.monotonic() - started


def run(tier: str, jobs: int, batch_delay_ms: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{tier}-") as tmp:
        stack = Stack(Path(tmp), batch_delay_ms)
        try:
            return measure(stack, tier, jobs)
        finally:
            stack.stop()


def measure(stack: Stack, tier: str, jobs: int) -> dict[str, Any]:
    time.sleep(2)  # the worker's start-up allocations settle
    rss_before = rss_mib(stack.worker.pid)
    redis_before = int(stack.redis.info("memory")["used_memory"])
    stats_before = requests.get(f"{stack.fake}/_stats", timeout=5).json()
    ids, submit_s = submit_all(stack.api, jobs, tier)
    queue = "batch" if tier == "batch" else "default"
    peak_rss, peak_redis = rss_before, redis_before
    started = time.monotonic()
    while True:
        ended = stack.redis.zcard(f"rq:finished:{queue}") + stack.redis.zcard(f"rq:failed:{queue}")
        peak_rss = max(peak_rss, rss_mib(stack.worker.pid))
        peak_redis = max(peak_redis, int(stack.redis.info("memory")["used_memory"]))
        if ended >= jobs:
            break
        if time.monotonic() - started > 1800:
            raise SystemExit(f"{tier}: only {ended} of {jobs} jobs ended in 30 min")
        time.sleep(0.5)
    stats = requests.get(f"{stack.fake}/_stats", timeout=5).json()
    with stack.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "ended_at")
        ended_at = [datetime.fromisoformat(raw.decode().replace("Z", "+00:00")) for raw in pipe.execute()]
    usage = requests.get(f"{stack.api}/v1/usage", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).json()
    figures: dict[str, Any] = {
        "tier": tier,
        "jobs": jobs,
        "succeeded": int(stack.redis.zcard(f"rq:finished:{queue}")),
        "failed": int(stack.redis.zcard(f"rq:failed:{queue}")),
        "submit_s": round(submit_s, 1),
        "first_submit_to_last_end_s": round(time.monotonic() - started + submit_s, 1),
        "provider_batches_created": stats["batch_creates"] - stats_before["batch_creates"],
        "messages_calls": stats["messages_calls"] - stats_before["messages_calls"],
        "cost_per_job_usd": usage["total"]["cost_usd"] / usage["total"]["jobs"],
        "worker_rss_peak_over_idle_kib_per_job": round((peak_rss - rss_before) * 1024 / jobs, 2),
        "redis_peak_over_idle_bytes_per_job": round((peak_redis - redis_before) / jobs),
    }
    if tier == "batch":
        sdk = anthropic.Anthropic(api_key="bench", base_url=stack.fake)
        batch_ends = [b.ended_at for b in sdk.messages.batches.list(limit=100).data if b.ended_at]
        figures["provider_batch_end_to_last_job_end_s"] = round((max(ended_at) - max(batch_ends)).total_seconds(), 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--batch-delay-ms", type=int, default=5000)
    parser.add_argument("--tiers", default="batch,standard")
    args = parser.parse_args()
    for tier in args.tiers.split(","):
        figures = run(tier, args.jobs, args.batch_delay_ms)
        print(json.dumps(figures), flush=True)
        print("  ".join(f"{k}={v}" for k, v in figures.items()), file=sys.stderr, flush=True)
    print(f"at {datetime.now(UTC).isoformat(timespec='seconds')}", file=sys.stderr)


if __name__ == "__main__":
    main()
