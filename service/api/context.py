"""What the app factory builds once and every request uses."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from flask import current_app
from redis import Redis
from rq import Queue

from service.config import Settings

EXTENSION_KEY = "llm_jobs"


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    redis: Redis
    queues: dict[str, Queue]
    stream_slots: threading.BoundedSemaphore  # open SSE streams this process may serve


def app_context() -> AppContext:
    return current_app.extensions[EXTENSION_KEY]
