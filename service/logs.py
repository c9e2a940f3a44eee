"""JSON log lines on every process, carrying the job and client they concern.

One line per record: `time`, `level`, `logger`, `message`, `process` (api, worker,
scheduler) and whatever `log_context` has bound (`job_id`, `client`, `queue`, `attempt`,
...) plus a record's own `extra` (e.g. `outcome`). With tracing on, a line written in a
trace (a request, a job's run) also has its `trace_id` and `span_id` (service/tracing.py),
so a log search and the trace find each other. No API key, secret or prompt text is
logged by default: auth never logs the header, jobs are described by model and client.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from service import tracing

_context: ContextVar[tuple[tuple[str, Any], ...]] = ContextVar("log_context", default=())


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every log line written inside the block (this thread or task only)."""
    token = _context.set((*_context.get(), *fields.items()))
    try:
        yield
    finally:
        _context.reset(token)


# RQ attaches a failed job's call to its log record as `extra` fields. A text log never
# shows them; a JSON one would, and a job's arguments are its prompt.
_NEVER_LOGGED = ("arguments", "kwargs")


class ContextFilter(logging.Filter):
    """Adds the job context, the trace's ids, and hides a failed job's arguments. On every
    handler of every process: `configure_logging`, and the API server's logging config."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get():
            setattr(record, name, value)
        for name in _NEVER_LOGGED:
            if hasattr(record, name):
                setattr(record, name, "[not logged]")
        if (ids := tracing.ids_of_current_span()) is not None:
            record.trace_id, record.span_id = ids
        return True


class SampledAccessLines(logging.Filter):
    """The API server's access lines: every error's (status 400 and up), and a `share` of the
    others (each then says `"sampled": share`, so a count of lines can be scaled back up).
    Filtered on the logger, before a line is formatted: the formatting is most of its cost."""

    def __init__(self, share: float):
        super().__init__()
        self.share = share

    def filter(self, record: logging.LogRecord) -> bool:
        status = record.args.get("status") if isinstance(record.args, dict) else None
        if self.share >= 1 or (isinstance(status, int) and status >= 400):
            return True
        record.sampled = self.share
        return random.random() < self.share


def json_formatter(process: str) -> JsonFormatter:
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"process": process},
    )


def configure_logging(process: str, level: str = "INFO") -> None:
    """Send every logger's records (RQ's too: it adds no handler of its own when the root
    has one) to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter(process))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
