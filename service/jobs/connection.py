"""Redis connections for the API and for workers."""

from __future__ import annotations

from redis import Redis


def api_connection(url: str) -> Redis:
    """Short timeouts: a request must fail fast (503) when Redis is away, not hang."""
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=15)


def worker_connection(url: str) -> Redis:
    """No read timeout: RQ blocks on BLPOP-style dequeues and sets its own bounds."""
    return Redis.from_url(url, socket_connect_timeout=5, health_check_interval=15)
