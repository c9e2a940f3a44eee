"""Fake Anthropic Messages API server for tests, load benchmarks and local dev.

Run with ``python -m fake_anthropic --port 8765``; see server.py for details.
"""

from .server import create_app

__all__ = ["create_app"]
