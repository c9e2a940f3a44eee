"""The `stack` marker (pyproject.toml): every test that starts processes (redis-server, the fake
Anthropic server, the API, workers, the scheduler) through the fixtures, directly or through
another (`client`, `start_api`, ...), so that `pytest -m "not stack"` is a quick loop. A test
that starts a process by hand marks itself with `@pytest.mark.stack` (`fake_process` is
test_fake_anthropic.py's own fake server process)."""

from __future__ import annotations

import pytest

STACK_FIXTURES = frozenset({"redis_server", "fake_anthropic", "processes", "fake_process"})


def mark_stack_tests(items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)
