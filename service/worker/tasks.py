"""The only functions a worker runs, by the name an RQ job gives.

A job names its function as a string, and anyone who can write to Redis can name any
function (`os.system`, say). RQ would import and call it; this worker looks the name up
here and fails any other job with a clear error, importing nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.jobs.operations.scheduler import CLEANUP_TASK
from service.jobs.storage.queues import DELIVERY_TASK, DOCUMENT_TASK, LLM_TASK
from service.tasks.document_job import run_document_job
from service.tasks.llm_job import run_llm_job
from service.tasks.maintenance import run_cleanup
from service.tasks.webhook_job import deliver_webhook


@dataclass(frozen=True)
class Task:
    func: Callable[..., Any]
    # An asyncio task on the loop (`func(job, runtime, *args, **kwargs)`), or blocking code
    # in the worker's thread pool (`func(job, *args, **kwargs)`).
    on_loop: bool
    name: str  # what a run of it is called in a trace and a bug report


UNKNOWN_TASK = "unknown task"


TASKS: dict[str, Task] = {
    LLM_TASK: Task(run_llm_job, on_loop=True, name="message job"),
    DOCUMENT_TASK: Task(run_document_job, on_loop=True, name="document job"),
    DELIVERY_TASK: Task(deliver_webhook, on_loop=False, name="webhook delivery"),
    CLEANUP_TASK: Task(run_cleanup, on_loop=False, name="clean-up"),
}


def unknown_task_error(func_name: str | None) -> str:
    return f"refused: {func_name!r} is not a task this service runs (known: {', '.join(sorted(TASKS))})"
