"""Run a pool of RQ workers: `python worker.py [QUEUE ...]` (default: high default low).

Queues are served in strict priority order, in the order given. WORKER_CONCURRENCY
forking workers run side by side, so one pool makes that many LLM calls at once while
keeping RQ's per-job process isolation, timeouts, stop command and heartbeats. A worker
that dies (say, during a Redis outage) is replaced; its job is recovered by the scheduler.
"""

from __future__ import annotations

import argparse
import sys

from rq.worker_pool import WorkerPool

from service.config import SettingsError, load_settings
from service.jobs.connection import wait_until_reachable, worker_connection
from service.jobs.queues import PRIORITIES, SERIALIZER, WEBHOOK_QUEUE
from service.jobs.worker import LLMWorker
from service.logs import configure_logging
from service.tasks import llm_job, webhook_job  # noqa: F401  (imported here, so forked job processes start warm)


def main(argv: list[str] | None = None) -> int:
    configure_logging("worker")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    known = (*PRIORITIES, WEBHOOK_QUEUE)
    parser.add_argument(
        "queues", nargs="*", metavar="QUEUE", help=f"any of {', '.join(known)} (default: the first three)"
    )
    parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.queues) - set(known))
    if unknown:
        parser.error(f"unknown queue(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    queues = list(dict.fromkeys(args.queues)) or list(PRIORITIES)
    try:
        settings = load_settings(require_llm_key=True)
    except SettingsError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        return 2
    connection = worker_connection(settings.redis_url)
    wait_until_reachable(connection)
    # Always a pool, even of one: its parent never touches Redis and respawns a worker
    # that died (say, of a Redis outage) every second, so the process outlives outages.
    pool = WorkerPool(
        queues, connection, num_workers=settings.worker_concurrency, worker_class=LLMWorker, serializer=SERIALIZER
    )
    pool.start(burst=args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
