"""What the worker lends each task it runs: the process's shared clients and its bookkeeping."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Final, Literal

from redis import Redis

from service.config import Settings
from service.jobs.running.progress import ProgressRecorder
from service.jobs.running.provider_gate import ProviderGate
from service.llm.client import LLMClient

# Why the worker stopped a task from outside: its client asked (`canceled`), an operator
# (RQ's stop-job, `stopped`), or another run of the job completed it (`superseded`).
StopReason = Literal["canceled", "stopped", "superseded"]
CANCELED: Final = "canceled"
STOPPED: Final = "stopped"
SUPERSEDED: Final = "superseded"


@dataclass
class TaskRuntime:
    connection: Redis
    settings: Settings
    llm: LLMClient | None  # one AsyncAnthropic (one connection pool) per process; None: no LLM queues
    gate: ProviderGate
    # The running jobs' streamed text, by job id: the worker writes what is new of all of
    # them in one pipeline per tick.
    progress: dict[str, ProgressRecorder] = field(default_factory=dict)
    # Why the worker cancelled a job's task, by job id; a task cancelled for no reason
    # given here is being put back in its queue (the worker is shutting down).
    stop_reasons: dict[str, StopReason] = field(default_factory=dict)
    # Document text extractions running at once (each in a child process of its own, of up
    # to isolation.MEMORY_LIMIT_BYTES): they compute, so the cores shared among the host's
    # WORKER_PROCESSES, at least one each.
    extractions: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.extractions = asyncio.Semaphore(max(1, (os.cpu_count() or 1) // self.settings.worker_processes))
