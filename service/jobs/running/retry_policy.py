"""When to try a failed LLM call again."""

from __future__ import annotations

import math
import random
import time

from rq import Retry


def retry_delay_s(
    attempt: int, *, base_s: float, cap_s: float, retry_after_s: float | None, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter after `attempt` (1-based) failed, but never
    sooner than the provider's `retry-after`.

    Full jitter (a uniform draw below the exponential ceiling) spreads a burst of
    failures out instead of retrying them in lockstep.
    """
    ceiling = min(cap_s, base_s * 2 ** (attempt - 1))
    backoff = (rng or random).uniform(0, ceiling)
    return max(backoff, retry_after_s or 0.0)


def rq_retry(wait_s: float, max_retries: int) -> tuple[Retry, float]:
    """RQ's `Retry` for a wait of at least `wait_s`, and when the job will fall due (epoch s).

    RQ scores scheduled jobs in whole seconds, truncated, so a job falls due up to 1 s
    before now + interval: one more second keeps the wait at least `wait_s`.
    """
    interval = math.ceil(wait_s) + 1
    return Retry(max=max_retries, interval=interval), math.floor(time.time() + interval)
