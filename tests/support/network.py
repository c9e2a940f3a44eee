"""Ports for the servers a test starts, and whether one answers yet."""

from __future__ import annotations

import socket

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:  # refused, or too busy to answer yet
        return False
