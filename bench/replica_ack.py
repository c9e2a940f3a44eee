"""What REDIS_MIN_REPLICAS_ACK=1 costs a submit: rate and latency against 0, in one run.

Starts a Redis primary and a replica (redis-server on free ports in a temp dir, AOF
everysec as in production), then, alternating the setting round by round (0, 1, 0, 1, ...),
the API (`python wsgi.py`) with REDIS_MIN_REPLICAS_ACK set, and `bench.load`'s submit phase
against it (no workers: only the submit is measured). Prints one line per round and the
median of each setting's rounds.

    .venv/bin/python -m bench.replica_ack [--rounds 3] [--jobs 3000] [--clients 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

API_KEY = "key-alpha-7f3c9e21d4b8a605"
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(directory: Path, port: int, *extra: str) -> subprocess.Popen:
    directory.mkdir()
    binary = shutil.which("redis-server") or "redis-server"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--appendonly", "yes",
         "--appendfsync", "everysec", "--save", "", *extra],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    until(lambda: _answers(redis.Redis(port=port)), "redis-server to answer")
    return process


def until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _serves(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def one_round(redis_url: str, replicas_ack: int, args: argparse.Namespace, workdir: Path) -> dict:
    redis.Redis.from_url(redis_url).flushall()
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "API_KEYS": f"alpha={API_KEY}",
        "RATE_LIMIT": "1000000/minute",
        "QUEUE_MAX_DEPTH": "0",
        "REDIS_MIN_REPLICAS_ACK": str(replicas_ack),
        "WEB_CONCURRENCY": "2",
        "BIND": f"127.0.0.1:{port}",
    }
    api = subprocess.Popen(
        [sys.executable, "wsgi.py"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: _serves(url), "the API to answer")
        out = workdir / f"load-{replicas_ack}-{time.monotonic_ns()}.json"
        subprocess.run(
            [sys.executable, "-m", "bench.load", "--url", url, "--key", API_KEY, "--clients", str(args.clients),
             "--jobs", str(args.jobs), "--json", str(out)],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        submit = json.loads(out.read_text())["submit"]
    finally:
        api.terminate()
        api.wait(timeout=30)
    return {
        "ack": replicas_ack,
        "accepted": submit["accepted"],
        "by_status": submit["by_status"],
        "rate": submit["throughput_jobs_per_s"],
        "p50_ms": submit["latency_ms"]["p50"],
        "p99_ms": submit["latency_ms"]["p99"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replica-ack-") as temp:
        workdir = Path(temp)
        primary_port, replica_port = free_port(), free_port()
        primary = start_redis(workdir / "primary", primary_port)
        replica = start_redis(workdir / "replica", replica_port, "--replicaof", "127.0.0.1", str(primary_port))
        try:
            until(lambda: redis.Redis(port=primary_port).info("replication")["connected_slaves"] == 1, "the replica")
            results = []
            for _ in range(args.rounds):
                for ack in (0, 1):
                    result = one_round(f"redis://127.0.0.1:{primary_port}/0", ack, args, workdir)
                    print(json.dumps(result), flush=True)
                    results.append(result)
        finally:
            for process in (replica, primary):
                process.terminate()
                process.wait(timeout=30)
    for ack in (0, 1):
        mine = [r for r in results if r["ack"] == ack]
        print(
            f"REDIS_MIN_REPLICAS_ACK={ack}: median of {len(mine)} rounds: "
            f"{statistics.median(r['rate'] for r in mine):.0f} submits/s, "
            f"p50 {statistics.median(r['p50_ms'] for r in mine):.2f} ms, "
            f"p99 {statistics.median(r['p99_ms'] for r in mine):.2f} ms"
        )


if __name__ == "__main__":
    main()
