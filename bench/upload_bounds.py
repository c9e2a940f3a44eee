"""The upload bounds at their limits (issue 21), through a running stack: the largest text
a document may give, the largest text upload (refused at the text bound), the deepest DOCX
allowed, and listing 1,000 jobs with a rare status. For each: the API's and the worker's CPU
seconds and peak RSS (each with its descendants), and another client's small jobs, sent every
0.5 s meanwhile, from submit to end.

    python -m bench.upload_bounds --url http://127.0.0.1:8000 --key KEY --other-key KEY2 \\
        --api-pid PID --worker-pid PID [--max-characters 2000000]

Prints one JSON object per case.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.polling import epoch_s, wait_for_ends
from bench.worker_memory import process_tree, rss_mib
from tests.documents import docx_with_body

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of `pid` and its descendants, living and reaped, in seconds."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / TICKS


@contextmanager
def measured(name: str, args: argparse.Namespace) -> Iterator[dict]:
    """CPU and peak RSS of the API and worker, and the other client's job latency, while
    the block runs."""
    out: dict = {"case": name}
    peaks = {"api": 0.0, "worker": 0.0}
    other = requests.Session()
    other.headers["Authorization"] = f"Bearer {args.other_key}"
    others: list[str] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peaks["api"] = max(peaks["api"], rss_mib(args.api_pid))
            peaks["worker"] = max(peaks["worker"], rss_mib(args.worker_pid))
            stop.wait(0.05)

    def send_others() -> None:
        while not stop.is_set():
            body = {"prompt": "another client's small job", "max_tokens": 16}
            others.append(other.post(f"{args.url}/v1/jobs", json=body, timeout=30).json()["id"])
            stop.wait(0.5)

    before = {"api": cpu_s(args.api_pid), "worker": cpu_s(args.worker_pid)}
    threads = [threading.Thread(target=sample), threading.Thread(target=send_others)]
    for thread in threads:
        thread.start()
    started = time.time()
    try:
        yield out
    finally:
        out["wall_s"] = round(time.time() - started, 2)
        stop.set()
        for thread in threads:
            thread.join()
        out["cpu_s"] = {k: round(cpu_s(getattr(args, f"{k}_pid")) - v, 2) for k, v in before.items()}
        out["peak_rss_mib"] = {k: round(v, 1) for k, v in peaks.items()}
        ends = wait_for_ends(other, args.url, others, interval_s=0.2, deadline=time.time() + 60)
        latencies = sorted(epoch_s(j["finished_at"]) - epoch_s(j["created_at"]) for j in ends.values())
        out["other_client_jobs"] = {
            "sent": len(others),
            "ended": len(ends),
            "median_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
            "max_s": round(latencies[-1], 3) if latencies else None,
        }
        print(json.dumps(out), flush=True)


def document_case(args: argparse.Namespace, session: requests.Session, name: str, data: bytes, filename: str) -> None:
    with measured(name, args) as out:
        files = {"file": (filename, io.BytesIO(data)), "options": (None, json.dumps({"analyses": ["summary"]}))}
        job = session.post(f"{args.url}/v1/documents", files=files, timeout=120).json()
        end = wait_for_ends(session, args.url, [job["id"]], interval_s=0.2, deadline=time.time() + 600)[job["id"]]
        out["upload_bytes"] = len(data)
        out["status"] = end["status"]
        out["characters"] = end["document"]["characters"]
        out["error"] = (end["error"] or {}).get("message")


def listing_case(args: argparse.Namespace, session: requests.Session) -> None:
    prompt = os.urandom(args.prompt_bytes // 2).hex()  # random: RQ's zlib cannot shrink it

    def submit(n: int) -> str:
        answer = session.post(f"{args.url}/v1/jobs", json={"prompt": f"{n} {prompt}", "max_tokens": 16}, timeout=60)
        answer.raise_for_status()
        return answer.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(args.jobs)))
    wait_for_ends(session, args.url, ids, interval_s=1, deadline=time.time() + 600)
    with measured(f"listing {args.jobs} jobs with {args.prompt_bytes}-byte prompts, status=canceled", args) as out:
        with ThreadPoolExecutor(6) as pool:  # six at once, as the review did
            pages = list(
                pool.map(
                    lambda _: session.get(f"{args.url}/v1/jobs", params={"status": "canceled"}, timeout=60),
                    range(6),
                )
            )
        out["answers"] = [page.status_code for page in pages]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--other-key", required=True)
    parser.add_argument("--api-pid", type=int, required=True, help="the API server's main process (python wsgi.py)")
    parser.add_argument("--worker-pid", type=int, required=True, help="worker.py")
    parser.add_argument("--max-characters", type=int, default=2_000_000, help="MAX_DOCUMENT_CHARACTERS of the stack")
    parser.add_argument("--max-bytes", type=int, default=20 * 1024 * 1024, help="MAX_DOCUMENT_BYTES of the stack")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--prompt-bytes", type=int, default=100_000)
    parser.add_argument("--only-listing", action="store_true", help="needs RATE_LIMIT above --jobs a minute")
    args = parser.parse_args()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.key}"
    if args.only_listing:
        return listing_case(args, session)
    prose = b"The quarterly report shows revenue grew while costs fell. " * (args.max_characters // 59)
    document_case(args, session, "largest text allowed", prose[: args.max_characters], "report.txt")
    document_case(
        args, session, "largest text upload (refused at the text bound)", b"a " * (args.max_bytes // 2), "a.txt"
    )
    deepest = docx_with_body("<w:p><w:r><w:t>deep</w:t></w:r>" * 250 + "</w:p>" * 250)
    document_case(args, session, "deepest DOCX allowed (250 nested paragraphs)", deepest, "deep.docx")
    listing_case(args, session)


if __name__ == "__main__":
    main()
