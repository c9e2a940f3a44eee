"""The `stack` marker (tests/support/markers.py, docs/development/tests.md): every test that starts
processes through the fixtures has it, so `pytest -m "not stack"` is a loop without them."""

from __future__ import annotations

import pytest

from tests.support.markers import STACK_FIXTURES


def test_tests_that_start_processes_are_marked_stack_and_pure_ones_are_not(request: pytest.FixtureRequest):
    items = request.session.items
    starting = [item for item in items if STACK_FIXTURES.intersection(getattr(item, "fixturenames", ()))]
    unit = [item for item in items if "tests/unit/" in item.nodeid]

    assert [item.nodeid for item in starting if item.get_closest_marker("stack") is None] == []
    assert [item.nodeid for item in unit if item.get_closest_marker("stack") is not None] == []
    assert request.node.get_closest_marker("stack") is None


@pytest.mark.usefixtures("redis_conn")
def test_a_test_on_the_stacks_fixtures_is_marked(request: pytest.FixtureRequest):
    assert request.node.get_closest_marker("stack") is not None
