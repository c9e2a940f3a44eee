"""Calls made at the same moment, for the tests of races."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def all_at_once(threads: int, call: Callable[[], T]) -> list[T]:
    """`call()` in `threads` threads released together; their results. (A Flask test client
    is not thread-safe: let `call` make its own.)"""
    start = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def run(slot: int) -> None:
        start.wait()
        results[slot] = call()

    workers = [threading.Thread(target=run, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    return results
