"""Ports for the servers a test starts, and whether one answers yet."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def refused_port() -> Iterator[int]:
    """A port that refuses every connection while the block runs: bound, never listening, so
    no process of a parallel run can take it meanwhile (as it can a `free_port` chosen early)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:  # refused, or too busy to answer yet
        return False
