"""A deadline-and-cancel token that a running LLM call honours.

Checking it between stream chunks is not enough: a provider that sends nothing leaves
the reader blocked. `closing()` therefore watches the token from a helper thread and
closes the connection from outside the reading loop the moment the token stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from service.background import polling

WATCH_INTERVAL_S = 0.1


class Stopped(Exception):
    """The call was stopped on purpose: `reason` is "timeout" or "canceled"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class StopToken:
    """Stops work at `deadline` (epoch seconds) or when `cancel()` is called. Thread-safe."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self._canceled = threading.Event()

    def cancel(self) -> None:
        self._canceled.set()

    @property
    def reason(self) -> str | None:
        if self._canceled.is_set():
            return "canceled"
        if time.time() >= self.deadline:
            return "timeout"
        return None

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.time())

    def raise_if_stopped(self) -> None:
        if (reason := self.reason) is not None:
            raise Stopped(reason)

    def closing(self, close: Callable[[], None]) -> AbstractContextManager[None]:
        """Run the body; if the token stops meanwhile, call `close()` from a watcher thread."""

        def check() -> bool:
            if self.reason is None:
                return False
            close()
            return True

        return polling(check, WATCH_INTERVAL_S, name="stop-token-watcher")
