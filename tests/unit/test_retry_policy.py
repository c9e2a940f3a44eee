"""service/jobs/running/retry_policy.py: backoff with full jitter, never sooner than retry-after."""

from __future__ import annotations

import random
import time

import pytest

from service.jobs.running.retry_policy import retry_delay_s, rq_retry


class Extreme(random.Random):
    """A draw always at one end of the range: `uniform(a, b)` answers `b` (or `a`)."""

    def __init__(self, high: bool) -> None:
        super().__init__()
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0), (5, 30.0), (40, 30.0)])
def test_the_ceiling_doubles_per_attempt_up_to_the_cap(attempt, ceiling):
    assert retry_delay_s(attempt, base_s=2, cap_s=30, retry_after_s=None, rng=Extreme(high=True)) == ceiling


def test_full_jitter_can_retry_at_once_and_stays_below_the_ceiling():
    assert retry_delay_s(4, base_s=2, cap_s=30, retry_after_s=None, rng=Extreme(high=False)) == 0.0
    rng = random.Random(1234)
    draws = [retry_delay_s(3, base_s=2, cap_s=30, retry_after_s=None, rng=rng) for _ in range(500)]
    assert all(0 <= d <= 8 for d in draws)
    assert len(set(draws)) > 400  # spread out, not in lockstep
    assert min(draws) < 1 and max(draws) > 7


def test_the_providers_retry_after_is_a_floor_not_a_ceiling():
    low = Extreme(high=False)
    assert retry_delay_s(1, base_s=2, cap_s=30, retry_after_s=7.5, rng=low) == 7.5
    # Longer than the cap: the provider's word wins over our own bound.
    assert retry_delay_s(9, base_s=2, cap_s=30, retry_after_s=120, rng=low) == 120
    # Shorter than the drawn backoff: the backoff stands.
    assert retry_delay_s(3, base_s=2, cap_s=30, retry_after_s=1, rng=Extreme(high=True)) == 8
    assert retry_delay_s(3, base_s=2, cap_s=30, retry_after_s=0.0, rng=low) == 0.0


@pytest.mark.parametrize(("wait_s", "interval"), [(0, 1), (0.2, 2), (1, 2), (1.5, 3), (29.0001, 31)])
def test_rq_retry_waits_at_least_the_wait_despite_whole_second_scores(wait_s, interval):
    before = time.time()
    retry, due_at = rq_retry(wait_s, max_retries=4)
    after = time.time()
    assert (retry.max, retry.intervals) == (4, [interval])
    # RQ truncates the score to whole seconds: the job may fall due up to 1 s early, never
    # before now + wait_s.
    assert int(before + interval) <= due_at <= int(after + interval)
    assert due_at + 1 > before + wait_s
