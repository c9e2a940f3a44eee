"""Run rq-scheduler: `python scheduler.py`.

It moves jobs scheduled with rq-scheduler into their queues when due. rq-scheduler holds
a Redis lock, so a second scheduler process waits instead of doubling the work.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rq import Queue
from rq_scheduler import Scheduler

from service.config import SettingsError, load_settings
from service.jobs.connection import wait_until_reachable, worker_connection
from service.jobs.queues import SERIALIZER


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    parser.add_argument("--burst", action="store_true", help="move what is due once, then exit")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        return 2
    connection = worker_connection(settings.redis_url)
    wait_until_reachable(connection)
    # Jobs it enqueues go through a JSON-serializing queue, like every job of ours.
    queue = Queue("default", connection=connection, serializer=SERIALIZER)
    Scheduler(queue=queue, connection=connection, interval=args.interval).run(burst=args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
