"""Run a check beside a blocking call, in a helper thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def polling(check: Callable[[], bool], interval_s: float, name: str) -> Iterator[None]:
    """While the body runs, call `check` every `interval_s` from a helper thread, until it
    returns True or the body ends; the thread is joined before leaving."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(interval_s):
            if check():
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
