"""Document jobs: N copies of a many-page PDF uploaded at once, each with the four default
analyses, through a running stack; the time to the last end and the worker's peak memory.

    python -m bench.documents --url http://127.0.0.1:8000 --key KEY --worker-pid PID \\
        [--docs 20] [--pages 50]

The PDF is made here (tests/documents.py: a real text layer, 40 lines a page). The worker's
memory is sampled every 20 ms while the jobs run: its own RSS, and with its descendants (the
forkserver and the extraction children); its VmHWM (its own peak) is read at the end.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.polling import epoch_s, wait_for_ends
from bench.worker_memory import rss_mib
from tests.documents import pdf, report_pages


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--worker-pid", type=int, required=True, help="the worker process (not worker.py's parent)")
    parser.add_argument("--docs", type=int, default=1)
    parser.add_argument("--pages", type=int, default=50)
    args = parser.parse_args()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.key}"
    document = pdf(report_pages(args.pages))

    peaks = {"worker": 0.0, "tree": 0.0}
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            peaks["worker"] = max(peaks["worker"], status_kib(args.worker_pid, "VmRSS") / 1024)
            peaks["tree"] = max(peaks["tree"], rss_mib(args.worker_pid))
            time.sleep(0.02)

    def upload(n: int) -> str:
        files = {"file": (f"report-{n}.pdf", io.BytesIO(document))}
        answer = session.post(f"{args.url}/v1/documents", files=files, timeout=60)
        answer.raise_for_status()
        return answer.json()["id"]

    before = {"worker": status_kib(args.worker_pid, "VmRSS") / 1024, "tree": rss_mib(args.worker_pid)}
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.time()
    with ThreadPoolExecutor(min(args.docs, 16)) as pool:
        ids = list(pool.map(upload, range(args.docs)))
    submitted = time.time()
    jobs = wait_for_ends(session, args.url, ids, interval_s=0.05)
    running.clear()
    sampler.join()
    durations = sorted(epoch_s(j["finished_at"]) - epoch_s(j["created_at"]) for j in jobs.values())
    example = next(iter(jobs.values()))
    worker = {"before": round(before["worker"], 1), "peak": round(peaks["worker"], 1),
              "vm_hwm": round(status_kib(args.worker_pid, "VmHWM") / 1024, 1)}  # fmt: skip
    report = {
        "docs": args.docs,
        "pages": args.pages,
        "pdf_bytes": len(document),
        "characters": example["document"]["characters"],
        "calls_per_analysis": [step["attempts"] for step in example["steps"][1:]],
        "outcomes": sorted({j["status"] for j in jobs.values()}),
        "upload_s": round(submitted - started, 2),
        "all_done_s": round(max(epoch_s(j["finished_at"]) for j in jobs.values()) - started, 2),
        "job_s": {"min": round(durations[0], 2), "max": round(durations[-1], 2)},
        "tokens": example["result"]["usage"] if example["result"] else None,
        "worker_rss_mib": worker,
        "worker_and_children_rss_mib": {"before": round(before["tree"], 1), "peak": round(peaks["tree"], 1)},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
