"""The queues, how their jobs are serialized (JSON, never pickle), and which workers serve them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, get_args

from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import BaseWorker

from service.jobs.storage.record import Priority, Tier

# Strict dequeue order for a worker on all queues: the order `Priority` lists them in.
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
SERIALIZER = JSONSerializer
# Referenced by name so that the API never imports task code.
LLM_TASK = "service.tasks.llm_job.run_llm_job"
DOCUMENT_TASK = "service.tasks.document_job.run_document_job"
CLIENT_TASKS = (LLM_TASK, DOCUMENT_TASK)  # the jobs clients submit (and see, cancel, retry)
# Webhook deliveries have a queue of their own, served by `python worker.py webhooks`.
WEBHOOK_QUEUE = "webhooks"
DELIVERY_TASK = "service.tasks.webhook_job.deliver_webhook"
# Batch-tier jobs wait here until a worker's collector sends them in a provider batch
# (service/tasks/batch_tier.py); no worker dequeues them one by one.
BATCH_QUEUE = "batch"
TIERS: tuple[Tier, ...] = get_args(Tier)
ALL_QUEUES = (*PRIORITIES, BATCH_QUEUE, WEBHOOK_QUEUE)  # every queue our workers serve
# A worker counts as present only while its last heartbeat is this recent (workers
# heartbeat every few seconds).
HEARTBEAT_FRESH_S = 30


def make_queues(connection: Redis, names: tuple[str, ...] = PRIORITIES) -> dict[str, Queue]:
    """One Queue object per name; keep them: each caches the Redis server version."""
    return {name: Queue(name, connection=connection, serializer=SERIALIZER) for name in names}


def live_workers(queue: Queue) -> list[BaseWorker]:
    """The workers serving `queue` whose heartbeat is fresh: a killed worker's registration
    outlives it, so its presence alone says nothing."""
    fresh_after = now() - timedelta(seconds=HEARTBEAT_FRESH_S)
    return [w for w in Worker.all(queue=queue) if w.last_heartbeat and w.last_heartbeat > fresh_after]


class ReadTolerantJSONSerializer(JSONSerializer):
    """Our JSON serializer for views of RQ's own records (rq-dashboard): a value another
    serializer wrote reads as RQ's own marker for it, `{"unserialized": ...}`, instead of
    failing the page. Never unpickles."""

    @staticmethod
    def loads(s: bytes | str, *args: Any, **kwargs: Any) -> Any:
        try:
            return JSONSerializer.loads(s, *args, **kwargs)
        except ValueError:  # UnicodeDecodeError included
            return {"unserialized": "written by another serializer; not shown"}
