"""Black-box load harness for the LLM job service: it talks HTTP only.

Usage:
    python -m bench.load --url http://127.0.0.1:8000 --key KEY [--clients 32] [--jobs 2000]
        [--priority default] [--prompt-directive "tokens=16 chunk_delay_ms=0"] [--max-tokens 64]
        [--wait] [--wait-timeout 300] [--poll-threads 4] [--pids-from-pgrep] [--json PATH]

Phase 1 (submit): --clients threads, each with its own keep-alive `requests.Session`, POST
/v1/jobs until --jobs jobs have been submitted in total. Reports status codes, throughput
(accepted jobs per wall-clock second) and latency percentiles (nearest rank).

Phase 2 (--wait): a few threads poll GET /v1/jobs/<id> until every accepted job is terminal
or --wait-timeout passes. Reports outcomes, jobs completed per second (first submit to last
`finished_at`), queue wait (started_at - created_at) and run time (finished_at - started_at).

--pids-from-pgrep adds the RSS of the API's processes (`python wsgi.py`) and of the worker processes,
found with `pgrep -f` on this machine. Only a loopback URL (127.0.0.1 or localhost) is accepted.
Exit status: 0 when every submit got a 202, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from bench.polling import TERMINAL

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})
POLL_PAUSE_S = 0.25
PROCESS_PATTERNS = {"api": "wsgi.py", "workers": "worker.py"}


# ---------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL of the API, loopback only")
    parser.add_argument("--key", required=True, help="API key, sent as 'Authorization: Bearer KEY'")
    parser.add_argument("--clients", type=_positive_int, default=32, help="concurrent submitting clients (32)")
    parser.add_argument("--jobs", type=_positive_int, default=2000, help="jobs to submit in total (2000)")
    parser.add_argument("--priority", choices=("high", "default", "low"), default="default")
    parser.add_argument("--prompt-directive", default="tokens=16 chunk_delay_ms=0", help="fake Anthropic directive")
    parser.add_argument("--max-tokens", type=_positive_int, default=64, help="max_tokens of each job (64)")
    parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds per HTTP request (30)")
    parser.add_argument("--wait", action="store_true", help="poll the submitted jobs until they finish")
    parser.add_argument("--wait-timeout", type=float, default=300.0, help="seconds to poll at most (300)")
    parser.add_argument("--poll-threads", type=_positive_int, default=4, help="polling threads (4)")
    parser.add_argument("--pids-from-pgrep", action="store_true", help="report RSS of gunicorn and worker.py")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args(argv)
    try:
        args.url = loopback_base_url(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def loopback_base_url(url: str) -> str:
    """The URL without a trailing slash; ValueError unless it is http(s) on 127.0.0.1 or localhost."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"refusing {url!r}: this harness only targets http(s)://127.0.0.1 or localhost")
    return url.rstrip("/")


# ---------------------------------------------------------------------------- statistics


def nearest_rank(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def percentiles(values: list[float], pcts: tuple[int, ...] = (50, 90, 99)) -> dict[str, float | None]:
    """p50/p90/p99 and max of `values` (None when there are none), rounded to 0.1."""
    ordered = sorted(values)
    figures: dict[str, float | None] = {}
    for pct in pcts:
        figures[f"p{pct}"] = round(nearest_rank(ordered, pct), 1) if ordered else None
    figures["max"] = round(ordered[-1], 1) if ordered else None
    return figures


# ---------------------------------------------------------------------------- HTTP


def make_session(key: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies from the environment: talk to the given URL only
    session.headers.update({"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    return session


class JobCounter:
    """Hands out submit slots until `total` have been claimed; shared by all clients."""

    def __init__(self, total: int):
        self._total = total
        self._claimed = 0
        self._lock = threading.Lock()

    def claim(self) -> int | None:
        with self._lock:
            if self._claimed >= self._total:
                return None
            self._claimed += 1
            return self._claimed


# ---------------------------------------------------------------------------- phase 1: submit


@dataclass
class SubmitSample:
    latency_ms: float
    status: str  # the HTTP status code, or the exception's class name when no answer came
    job_id: str | None
    started_epoch: float


@dataclass
class SubmitPhase:
    samples: list[SubmitSample]
    wall_s: float

    @property
    def job_ids(self) -> list[str]:
        return [s.job_id for s in self.samples if s.job_id]

    @property
    def first_submit_epoch(self) -> float:
        return min(s.started_epoch for s in self.samples)


def job_payload(number: int, args: argparse.Namespace) -> dict[str, Any]:
    directive = f" [[fake: {args.prompt_directive}]]" if args.prompt_directive else ""
    return {"prompt": f"bench job {number}{directive}", "priority": args.priority, "max_tokens": args.max_tokens}


def submit_one(session: requests.Session, url: str, payload: dict[str, Any], timeout: float) -> SubmitSample:
    started_epoch = time.time()
    started = time.perf_counter()
    try:
        response = session.post(f"{url}/v1/jobs", json=payload, timeout=timeout)
        job_id = response.json().get("id") if response.status_code == 202 else None
    except requests.RequestException as exc:  # includes an unreadable JSON body
        return SubmitSample((time.perf_counter() - started) * 1000, type(exc).__name__, None, started_epoch)
    return SubmitSample((time.perf_counter() - started) * 1000, str(response.status_code), job_id, started_epoch)


def submit_client(counter: JobCounter, args: argparse.Namespace) -> list[SubmitSample]:
    """One client: its own session, submitting until the shared counter runs out."""
    samples: list[SubmitSample] = []
    with make_session(args.key) as session:
        while (number := counter.claim()) is not None:
            samples.append(submit_one(session, args.url, job_payload(number, args), args.request_timeout))
    return samples


def run_submit_phase(args: argparse.Namespace) -> SubmitPhase:
    counter = JobCounter(args.jobs)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.clients, thread_name_prefix="client") as pool:
        futures = [pool.submit(submit_client, counter, args) for _ in range(args.clients)]
        samples = [sample for future in futures for sample in future.result()]
    return SubmitPhase(samples, time.perf_counter() - started)


def summarize_submit(phase: SubmitPhase) -> dict[str, Any]:
    accepted = len(phase.job_ids)
    return {
        "total": len(phase.samples),
        "by_status": dict(sorted(Counter(s.status for s in phase.samples).items())),
        "accepted": accepted,
        "wall_s": round(phase.wall_s, 2),
        "throughput_jobs_per_s": round(accepted / phase.wall_s, 1) if phase.wall_s else None,
        "latency_ms": percentiles([s.latency_ms for s in phase.samples]),
    }


# ---------------------------------------------------------------------------- phase 2: wait


@dataclass
class PollState:
    """What one polling thread learned: the last resource of each job, and odd answers."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0


def poll_once(session: requests.Session, url: str, job_id: str, timeout: float, state: PollState) -> bool:
    """Fetch one job into `state`; True once there is nothing more to wait for."""
    state.requests += 1
    try:
        response = session.get(f"{url}/v1/jobs/{job_id}", timeout=timeout)
        job = response.json() if response.status_code == 200 else None
    except requests.RequestException as exc:  # includes an unreadable JSON body
        state.errors[type(exc).__name__] += 1
        return False
    if job is None:
        state.errors[str(response.status_code)] += 1
        return response.status_code == 404  # gone (or someone else's): nothing to wait for
    state.jobs[job_id] = job
    return job.get("status") in TERMINAL


def poll_jobs(job_ids: list[str], args: argparse.Namespace, deadline: float) -> PollState:
    """One polling thread, over its jobs in submission order, until all are finished or time is up.

    Jobs of one queue finish roughly in submission order, so a round stops at the first
    unfinished job: polling then costs about one request per job, not one per job per round,
    and leaves the CPU to the service. At the deadline a last sweep reads every pending job.
    """
    state = PollState()
    pending = list(job_ids)
    with make_session(args.key) as session:
        while pending and time.monotonic() < deadline:
            done = 0
            while done < len(pending) and poll_once(session, args.url, pending[done], args.request_timeout, state):
                done += 1
            pending = pending[done:]
            if pending:
                time.sleep(POLL_PAUSE_S)
        pending = [j for j in pending if not poll_once(session, args.url, j, args.request_timeout, state)]
    return state


def run_wait_phase(job_ids: list[str], args: argparse.Namespace) -> PollState:
    deadline = time.monotonic() + args.wait_timeout
    threads = min(args.poll_threads, max(1, len(job_ids)))
    slices = [job_ids[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="poller") as pool:
        states = list(pool.map(lambda ids: poll_jobs(ids, args, deadline), slices))
    merged = PollState()
    for state in states:
        merged.jobs.update(state.jobs)
        merged.errors.update(state.errors)
        merged.requests += state.requests
    return merged


def parse_iso(text: str | None) -> datetime | None:
    """An API timestamp as an aware datetime (a naive one is taken as UTC)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def span_ms(start: str | None, end: str | None) -> float | None:
    begin, finish = parse_iso(start), parse_iso(end)
    return (finish - begin).total_seconds() * 1000 if begin and finish else None


def summarize_wait(job_ids: list[str], state: PollState, first_submit_epoch: float) -> dict[str, Any]:
    statuses = Counter(state.jobs.get(j, {}).get("status", "never_seen") for j in job_ids)
    finished = [job for job in state.jobs.values() if job.get("status") in TERMINAL and job.get("finished_at")]
    last_finish = max((parse_iso(job["finished_at"]) for job in finished), default=None)
    span_s = last_finish.timestamp() - first_submit_epoch if last_finish else None
    waits = [span_ms(job.get("created_at"), job.get("started_at")) for job in finished]
    runs = [span_ms(job.get("started_at"), job.get("finished_at")) for job in finished]
    return {
        "jobs": len(job_ids),
        "succeeded": statuses["succeeded"],
        "failed": statuses["failed"],
        "canceled": statuses["canceled"],
        "unfinished": len(job_ids) - len(finished),
        "by_status": dict(sorted(statuses.items())),
        "poll_requests": state.requests,
        "poll_errors": dict(state.errors),
        "first_submit_to_last_finish_s": round(span_s, 2) if span_s else None,
        "completed_jobs_per_s": round(len(finished) / span_s, 1) if span_s else None,
        "queue_wait_ms": percentiles([w for w in waits if w is not None], (50, 99)),
        "run_time_ms": percentiles([r for r in runs if r is not None], (50, 99)),
    }


# ---------------------------------------------------------------------------- memory


def pids_matching(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split() if int(pid) != os.getpid()]


def rss_mib(pid: int) -> float | None:
    """The process's resident set size in MiB, or None if it is gone."""
    found = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, check=False)
    text = found.stdout.strip()
    return round(int(text) / 1024, 1) if text.isdigit() else None


def parent_map() -> dict[int, int]:
    """pid -> parent pid of every process on the machine."""
    found = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True)
    return {int(pid): int(ppid) for pid, ppid in (line.split() for line in found.stdout.splitlines())}


def ancestors(pid: int, parents: dict[int, int]) -> list[int]:
    """pid's parent, grandparent, ... up to (not including) pid 0."""
    chain: list[int] = []
    while (pid := parents.get(pid, 0)) > 0 and pid not in chain:
        chain.append(pid)
    return chain


def stack_root(api_port: int, api_pids: list[int], worker_pids: list[int]) -> int | None:
    """The smallest process subtree holding the API server that serves `api_port` and a worker.py.

    Other stacks on the machine (a test suite's API and workers, say) match the same
    pgrep patterns; only processes under this root belong to the stack being measured.
    """
    parents = parent_map()
    on_port = re.compile(rf":{api_port}(\s|$)")
    masters = [pid for pid in api_pids if on_port.search(_bind_of(pid)) and parents.get(pid) not in api_pids]
    if not masters:
        return None
    worker_ancestors = {a for pid in worker_pids for a in ancestors(pid, parents)}
    return next((a for a in ancestors(masters[0], parents) if a in worker_ancestors and a != 1), None)


def _bind_of(pid: int) -> str:
    """The address `python wsgi.py` serves: its BIND variable."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone, or not ours to read
        return ""
    return next((v.decode(errors="replace")[5:] for v in environ if v.startswith(b"BIND=")), "")


def memory_report(api_port: int) -> dict[str, Any]:
    """RSS per process and summed per group (a forked child's shared pages count again in each child)."""
    matched = {name: pids_matching(pattern) for name, pattern in PROCESS_PATTERNS.items()}
    root = stack_root(api_port, matched["api"], matched["workers"])
    parents = parent_map()
    report: dict[str, Any] = {"stack_root_pid": root}
    for name, pids in matched.items():
        mine = [pid for pid in pids if root is None or root in ancestors(pid, parents)]
        sizes = {str(pid): size for pid in mine if (size := rss_mib(pid)) is not None}
        report[name] = {
            "pattern": PROCESS_PATTERNS[name],
            "processes": len(sizes),
            "total_mib": round(sum(sizes.values()), 1),
            "ignored_outside_stack": len(pids) - len(mine),
            "rss_mib_by_pid": sizes,
        }
    return report


# ---------------------------------------------------------------------------- report


def format_percentiles(figures: dict[str, float | None]) -> str:
    return "  ".join(f"{name} {value}" for name, value in figures.items())


def format_report(results: dict[str, Any]) -> str:
    config, submit = results["config"], results["submit"]
    lines = [
        f"target   {config['url']}  clients {config['clients']}  jobs {config['jobs']}  priority {config['priority']}",
        f"prompt   [[fake: {config['prompt_directive']}]]  max_tokens {config['max_tokens']}",
        "",
        "submit",
        f"  requests    {submit['total']}  by status {submit['by_status']}",
        f"  wall        {submit['wall_s']} s",
        f"  throughput  {submit['throughput_jobs_per_s']} accepted jobs/s",
        f"  latency ms  {format_percentiles(submit['latency_ms'])}",
    ]
    if "wait" in results:
        wait = results["wait"]
        lines += [
            "",
            "end to end",
            f"  jobs        {wait['jobs']}  succeeded {wait['succeeded']}  failed {wait['failed']}"
            f"  canceled {wait['canceled']}  unfinished {wait['unfinished']}",
            f"  completed   {wait['completed_jobs_per_s']} jobs/s over {wait['first_submit_to_last_finish_s']} s"
            " (first submit to last finished_at)",
            f"  queue wait  ms  {format_percentiles(wait['queue_wait_ms'])}",
            f"  run time    ms  {format_percentiles(wait['run_time_ms'])}",
            f"  polling     {wait['poll_requests']} requests, errors {wait['poll_errors'] or 'none'}",
        ]
    if "memory" in results:
        lines += ["", "memory (RSS)"]
        memory = results["memory"]
        lines.append(f"  stack root pid {memory['stack_root_pid']} (None: not found, every pgrep match counted)")
        for name in PROCESS_PATTERNS:
            figures = memory[name]
            lines.append(
                f"  {name:<13} {figures['processes']} processes, {figures['total_mib']} MiB total"
                f" (ignored {figures['ignored_outside_stack']} outside the stack)  {figures['rss_mib_by_pid']}"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("url", "clients", "jobs", "priority", "prompt_directive", "max_tokens", "wait", "wait_timeout")
    results: dict[str, Any] = {"config": {key: getattr(args, key) for key in keys}}
    results["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    phase = run_submit_phase(args)
    results["submit"] = summarize_submit(phase)
    if args.wait and phase.job_ids:
        state = run_wait_phase(phase.job_ids, args)
        results["wait"] = summarize_wait(phase.job_ids, state, phase.first_submit_epoch)
    if args.pids_from_pgrep:
        parts = urlsplit(args.url)
        results["memory"] = memory_report(parts.port or (443 if parts.scheme == "https" else 80))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    print(format_report(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
    accepted_all = results["submit"]["accepted"] == results["submit"]["total"]
    return 0 if accepted_all else 1


if __name__ == "__main__":
    sys.exit(main())
