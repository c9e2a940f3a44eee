"""A job reaching its first call while its own process holds the provider gate."""

from __future__ import annotations

import asyncio

import pytest

from service.jobs.running.provider_gate import MIN_WAIT_S
from service.tasks import outcomes
from service.tasks.outcomes import Requeue, pass_gate


class HeldGate:
    def __init__(self, hold_s: float):
        self.hold_s = hold_s

    def closed_here_for(self) -> float:
        return self.hold_s


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(outcomes.asyncio, "sleep", sleep)
    return waits


def test_an_open_gate_lets_the_call_go_at_once(slept: list[float]) -> None:
    asyncio.run(pass_gate(HeldGate(0.0)))  # type: ignore[arg-type]
    assert slept == []


def test_a_hold_shorter_than_a_dequeue_pause_is_waited_out_in_place(slept: list[float]) -> None:
    asyncio.run(pass_gate(HeldGate(MIN_WAIT_S / 4)))  # type: ignore[arg-type]
    assert slept == [MIN_WAIT_S / 4]


def test_a_longer_hold_sends_the_job_back_to_its_queue(slept: list[float]) -> None:
    with pytest.raises(Requeue):
        asyncio.run(pass_gate(HeldGate(MIN_WAIT_S)))  # type: ignore[arg-type]
    assert slept == []
