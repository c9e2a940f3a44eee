"""Waiting for something to happen, with a bound, instead of sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_for(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll until `condition()` is truthy and return its value; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
