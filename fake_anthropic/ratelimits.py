"""Server-wide rate limits: a per-minute budget and 429/529 storms.

The real API puts ``anthropic-ratelimit-*`` headers on every answer and answers
429 with ``retry-after`` once a budget is spent. The service's shared provider
gate reacts to both, so the fake keeps a small budget that a test can shrink at
run time, and can be told to refuse every request for a while (a storm) so a
benchmark can count how many calls still arrive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

# Defaults high enough that no test or benchmark meets them by accident.
DEFAULT_REQUESTS_PER_MINUTE = 100_000
DEFAULT_TOKENS_PER_MINUTE = 100_000_000
STORM_STATUSES = (429, 529)


def rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def limit_headers(limits: dict[str, int], remaining: dict[str, int], reset_at: float) -> dict[str, str]:
    """``anthropic-ratelimit-{kind}-{limit,remaining,reset}`` for requests, input
    and output tokens, plus ``tokens-*``: the more restrictive of the two token
    limits, as the real API reports it."""
    tightest = min(("input-tokens", "output-tokens"), key=lambda kind: remaining[kind])
    sources = {kind: kind for kind in limits} | {"tokens": tightest}
    headers = {}
    for kind, source in sources.items():
        prefix = f"anthropic-ratelimit-{kind}"
        headers[f"{prefix}-limit"] = str(limits[source])
        headers[f"{prefix}-remaining"] = str(max(0, remaining[source]))
        headers[f"{prefix}-reset"] = rfc3339(reset_at)
    return headers


def retry_after_s(now: float, until: float) -> int:
    """Whole seconds until `until`, at least 1 (what ``retry-after`` carries)."""
    return max(1, math.ceil(until - now))


@dataclass
class Budget:
    """A fixed window: every `window_s` seconds the counts start again from zero.

    Windows end on a whole second so that ``retry-after`` (whole seconds) and the
    reset timestamps (whole seconds) name the same instant.
    """

    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    tokens_per_minute: int = DEFAULT_TOKENS_PER_MINUTE
    window_s: int = 60
    window_end: float = 0.0
    used: dict[str, int] = field(default_factory=dict)

    def limits(self) -> dict[str, int]:
        return {
            "requests": self.requests_per_minute,
            "input-tokens": self.tokens_per_minute,
            "output-tokens": self.tokens_per_minute,
        }

    def remaining(self, now: float) -> dict[str, int]:
        if now >= self.window_end:
            self.window_end = math.floor(now) + self.window_s
            self.used = {}
        return {kind: limit - self.used.get(kind, 0) for kind, limit in self.limits().items()}

    def spent(self, now: float) -> str | None:
        """The kind ("requests", "input-tokens", ...) used up in this window, if any."""
        return next((kind for kind, left in self.remaining(now).items() if left <= 0), None)

    def admit(self, now: float, input_tokens: int, output_tokens: int) -> bool:
        """Charge one request if nothing is spent yet; False when the window is used up.

        Like the real API, a request that starts with budget left may overshoot it.
        """
        if self.spent(now):
            return False
        for kind, amount in [("requests", 1), ("input-tokens", input_tokens), ("output-tokens", output_tokens)]:
            self.used[kind] = self.used.get(kind, 0) + amount
        return True

    def headers(self, now: float) -> dict[str, str]:
        return limit_headers(self.limits(), self.remaining(now), self.window_end)

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "window_seconds": self.window_s,
            "remaining": self.remaining(now),
            "reset": rfc3339(self.window_end),
        }


@dataclass
class Storm:
    """Every messages request between `started` and `ends` is refused with `status`."""

    status: int = 429
    retry_after: int = 1
    started: float = 0.0
    ends: float = 0.0
    arrivals: list[float] = field(default_factory=list)

    @classmethod
    def starting(cls, now: float, seconds: float, status: int = 429, retry_after: int = 1) -> Storm:
        return cls(status=status, retry_after=retry_after, started=now, ends=now + seconds)

    def active(self, now: float) -> bool:
        return self.started <= now < self.ends

    def as_dict(self, now: float) -> dict[str, object]:
        # Calls per whole second since the start: a benchmark's "calls per second of storm".
        per_second = [0] * math.ceil(self.ends - self.started)
        for at in self.arrivals:  # all within [started, ends)
            per_second[int(at - self.started)] += 1
        return {
            "active": self.active(now),
            "status": self.status,
            "retry_after": self.retry_after,
            "started": self.started,
            "ends": self.ends,
            "requests": len(self.arrivals),
            "per_second": per_second,
        }
