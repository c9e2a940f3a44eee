"""The API's CPU per submit through the server as shipped (`python wsgi.py`, granian), with
settings given as NAME=VALUE pairs: what a server-level setting (ACCESS_LOG, tracing) costs.

Starts a redis-server and the API (WEB_CONCURRENCY=1 unless given), sends N submits with the
bench's load generator (`../shared/bench/loadgen.py submit`, 32 at once, its own venv), and
prints the CPU the API's processes used (/proc, the server and its worker together), per
submit, and Redis' CPU per submit, with the load generator's submits/s and p99. Run two settings in turn, several
times (`--pairs`): the machine's noise is larger than most differences.

    .venv/bin/python -m bench.server_cost --n 4000 --pairs 3 ACCESS_LOG=1 vs ACCESS_LOG=0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.support.processes import process_tree

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT.parent / "shared" / "bench" / "loadgen.py"
ADAPTER = ROOT.parent / "shared" / "bench" / "adapters" / "product.json"
BENCH_PYTHON = Path(os.environ.get("BENCH_HOME", "/tmp/llmjobs-bench")) / "venv" / "bin" / "python"
API_KEY = "key-alpha-7f3c9e21d4b8a605"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    """utime + stime of `pids`, in seconds."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def one_run(settings: dict[str, str], n: int, api_port: int, redis_port: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no", "--dir", home],
            stdout=subprocess.DEVNULL,
        )
        env = {
            **os.environ, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "API_KEYS": f"alpha={API_KEY}",
            "RATE_LIMIT": "1000000/minute", "ANTHROPIC_API_KEY": "bench", "BIND": f"127.0.0.1:{api_port}",
            "WEB_CONCURRENCY": "1", **settings,
        }  # fmt: skip
        api = subprocess.Popen(
            [sys.executable, "wsgi.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            base_url = f"http://127.0.0.1:{api_port}"
            _wait_until_up(base_url)
            pids = process_tree(api.pid)
            before, redis_before = cpu_s(pids), cpu_s([redis.pid])
            out = subprocess.run(
                [str(BENCH_PYTHON), str(LOADGEN), "submit", "--adapter", str(ADAPTER), "--base-url", base_url,
                 "--n", str(n), "--c", "32"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            used, redis_used = cpu_s(pids) - before, cpu_s([redis.pid]) - redis_before
        finally:
            api.terminate()
            api.wait(timeout=60)
            redis.terminate()
            redis.wait(timeout=30)
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    return {
        "cpu_ms_per_submit": 1000 * used / n,
        "redis_cpu_ms_per_submit": 1000 * redis_used / n,
        "subs_per_s": report["subs_per_s"],
        "p99_ms": report["submit_p99_ms"],
    }


def _wait_until_up(base_url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base_url}/healthz", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API at {base_url} did not answer")


def parse_settings(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="submits per run")
    parser.add_argument("--pairs", type=int, default=3, help="runs of each setting, in turn")
    parser.add_argument("--api-port", type=int, default=8411)
    parser.add_argument("--redis-port", type=int, default=6411)
    parser.add_argument("settings", nargs="*", help="NAME=VALUE ... [vs NAME=VALUE ...]: the variants, in turn")
    args = parser.parse_args()
    variants = [parse_settings(part.split()) for part in f" {' '.join(args.settings)} ".split(" vs ")]
    for pair in range(args.pairs):
        for settings in variants:
            figures = one_run(settings, args.n, args.api_port, args.redis_port)
            named = " ".join(f"{k}={v}" for k, v in settings.items()) or "(defaults)"
            print(f"pair {pair + 1}  {named:<60} "
                  + "  ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
