"""Run a worker: `python worker.py [QUEUE ...]` (default: every queue, webhooks included).

One process runs up to WORKER_CONCURRENCY LLM jobs at once as asyncio tasks, taking
`high`, then `default`, then `low`, plus up to WEBHOOK_CONCURRENCY webhook deliveries;
serving `batch`, it also sends batch-tier jobs in provider batches and reads their results.
WORKER_PROCESSES (or --processes) runs that many such processes under a parent that
replaces one that dies.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from service.bug_reports import setup_bug_reports
from service.config import SettingsError, load_settings
from service.jobs.storage.queues import ALL_QUEUES, BATCH_QUEUE, PRIORITIES
from service.logs import configure_logging
from service.tracing import setup_tracing


def main(argv: list[str] | None = None) -> int:
    configure_logging("worker")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "queues", nargs="*", metavar="QUEUE", help=f"any of {', '.join(ALL_QUEUES)} (default: all of them)"
    )
    parser.add_argument("--processes", type=int, help="worker processes (default: WORKER_PROCESSES)")
    parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.queues) - set(ALL_QUEUES))
    if unknown:
        parser.error(f"unknown queue(s) {', '.join(unknown)}; choose from {', '.join(ALL_QUEUES)}")
    queues = list(dict.fromkeys(args.queues)) or list(ALL_QUEUES)
    try:
        # A worker of webhook deliveries alone never calls the LLM, and needs no key.
        settings = load_settings(require_llm_key=bool(set(queues) & {*PRIORITIES, BATCH_QUEUE}))
    except SettingsError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        return 2
    processes = args.processes or settings.worker_processes
    if processes > 1:
        from service.worker.supervisor import supervise

        return supervise(["worker.py", *args.queues, "--processes", "1"], processes)
    from service.jobs.storage.connection import wait_until_reachable, worker_connection
    from service.worker.async_worker import AsyncWorker

    # RQ's Worker reads Redis as it is made: started before its Redis (or while Sentinel
    # names no primary), the process waits for it rather than exit with a traceback.
    wait_until_reachable(worker_connection(settings))
    setup_tracing("worker", settings)
    setup_bug_reports("worker", settings.sentry_dsn)
    asyncio.run(AsyncWorker(settings, queues).run(burst=args.burst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
