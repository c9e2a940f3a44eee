"""Run rq-scheduler: `python scheduler.py`.

Every poll it moves due scheduled jobs into their queues and re-queues jobs whose worker
died. At start it registers the periodic clean-up (every CLEANUP_INTERVAL_S, on the low
queue) under a fixed id, so restarts never register it twice. rq-scheduler holds a Redis
lock, so a second scheduler process waits instead of doubling the work. A Redis outage
does not end the process: it waits and carries on.
"""

from __future__ import annotations

import argparse
import logging
import sys

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.bug_reports import report_bug, setup_bug_reports
from service.config import SettingsError, load_settings
from service.jobs.operations.scheduler import MaintainingScheduler, register_periodic_jobs
from service.jobs.storage.connection import wait_until_reachable, worker_connection
from service.logs import configure_logging

log = logging.getLogger("scheduler")


def main(argv: list[str] | None = None) -> int:
    configure_logging("scheduler")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    parser.add_argument("--burst", action="store_true", help="one poll, then exit")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"config error: {exc}", file=sys.stderr, flush=True)
        return 2
    setup_bug_reports("scheduler", settings.sentry_dsn)
    connection = worker_connection(settings)
    while True:
        wait_until_reachable(connection)
        try:
            scheduler = MaintainingScheduler(connection=connection, interval=args.interval)
            register_periodic_jobs(scheduler, cleanup_interval_s=settings.cleanup_interval_s)
            scheduler.run(burst=args.burst)
            return 0
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("lost Redis (%s); waiting for it", exc)
        except Exception as exc:
            # A bug: reported, then the process ends (its supervisor starts another).
            report_bug(exc)
            raise


if __name__ == "__main__":
    sys.exit(main())
