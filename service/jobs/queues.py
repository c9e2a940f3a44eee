"""The priority queues and how jobs are serialized (JSON, never pickle)."""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

PRIORITIES = ("high", "default", "low")  # strict dequeue order for a worker on all queues
SERIALIZER = JSONSerializer
# Referenced by name so that the API never imports task code.
LLM_TASK = "service.tasks.llm_job.run_llm_job"
DOCUMENT_TASK = "service.tasks.document_job.run_document_job"
CLIENT_TASKS = (LLM_TASK, DOCUMENT_TASK)  # the jobs clients submit (and see, cancel, retry)
# Webhook deliveries have a queue of their own, served by `python worker.py webhooks`.
WEBHOOK_QUEUE = "webhooks"
DELIVERY_TASK = "service.tasks.webhook_job.deliver_webhook"
ALL_QUEUES = (*PRIORITIES, WEBHOOK_QUEUE)  # every queue our workers serve


def make_queues(connection: Redis, names: tuple[str, ...] = PRIORITIES) -> dict[str, Queue]:
    """One Queue object per name; keep them: each caches the Redis server version."""
    return {name: Queue(name, connection=connection, serializer=SERIALIZER) for name in names}
