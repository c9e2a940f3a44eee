"""How a task tells the worker that its job did not simply succeed."""

from __future__ import annotations

from typing import Any


class JobFailed(Exception):
    """The job failed for good, as expected (the provider refused, the deadline passed, a
    cancel): the worker stores its error, not a traceback, which is kept for real bugs."""

    def __init__(self, error: dict[str, Any]):
        super().__init__(f"{error['type']}: {error['message']}")
        self.error = error


class Requeue(Exception):
    """Put the job back at the front of its queue, as it was: it never really ran."""
