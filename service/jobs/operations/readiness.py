"""Is the service ready to take jobs? Redis reachable and a live worker on every queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError, ResponseError
from rq import Queue

from service.jobs.storage import replies
from service.jobs.storage.queues import HEARTBEAT_FRESH_S, live_workers
from service.jobs.storage.sentinel import Primary, primary_of

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    checks: dict[str, str] = field(default_factory=dict)  # name -> "ok" or what is wrong
    warnings: list[str] = field(default_factory=list)
    primary: Primary | None = None  # the Redis this process uses, after the check reached it (or not)

    @property
    def ready(self) -> bool:
        return all(state == "ok" for state in self.checks.values())


def readiness(connection: Redis, queues: dict[str, Queue], *, min_replicas_ack: int = 0) -> Readiness:
    report = Readiness()
    try:
        connection.ping()
    except RedisError as exc:
        # The detail (host, port, the driver's words) is for the log, not for an unauthenticated caller.
        log.warning("readiness: Redis unreachable: %s", exc)
        report.checks["redis"] = "unreachable"
        report.primary = primary_of(connection)
        return report
    report.checks["redis"] = "ok"
    report.primary = primary_of(connection)
    for name, queue in queues.items():
        report.checks[f"workers:{name}"] = (
            "ok" if live_workers(queue) else f"no worker with a heartbeat in the last {HEARTBEAT_FRESH_S} s"
        )
    replicas = _replicas(connection)
    if replicas is not None and replicas < min_replicas_ack:
        report.warnings.append(
            f"Redis has {replicas} connected replicas, fewer than REDIS_MIN_REPLICAS_ACK ({min_replicas_ack}): "
            "submits answer 503 until enough replicas are back"
        )
    if not _persistent(connection):
        report.warnings.append("Redis persistence is off (no AOF, no RDB saves): a Redis restart loses queued jobs")
    return report


def _replicas(connection: Redis) -> int | None:
    try:
        return int(replies.as_info(connection.info("replication")).get("connected_slaves", 0))
    except ResponseError:  # managed Redis may refuse INFO sections
        return None


def _persistent(connection: Redis) -> bool:
    try:
        info = replies.as_info(connection.info("persistence"))
        saves = str(replies.as_info(connection.config_get("save")).get("save", ""))
    except ResponseError:  # managed Redis may refuse CONFIG: assume the provider persists
        return True
    return bool(info.get("aof_enabled")) or bool(saves.strip())
