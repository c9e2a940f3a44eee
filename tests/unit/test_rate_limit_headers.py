"""What the provider's `anthropic-ratelimit-*` headers say, and how long a low budget holds calls."""

from __future__ import annotations

import pytest

from service.jobs.running.provider_gate import RateLimitHeaders

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def headers(kind: str, limit: str | None, remaining: str, reset: str = "2027-01-15T08:01:00Z") -> dict[str, str]:
    answer = {f"anthropic-ratelimit-{kind}-remaining": remaining, f"anthropic-ratelimit-{kind}-reset": reset}
    if limit is not None:
        answer[f"anthropic-ratelimit-{kind}-limit"] = limit
    return answer


def test_parse_reads_limit_remaining_and_reset_of_each_kind() -> None:
    parsed = RateLimitHeaders.parse(
        headers("requests", "4000", "3999") | headers("input-tokens", "400000", "0", "2027-01-15T08:00:30Z")
    )
    assert parsed.remaining == {"requests": 3999, "input-tokens": 0}
    assert parsed.limits == {"requests": 4000, "input-tokens": 400000}
    assert parsed.resets_at == {"requests": NOW + 60, "input-tokens": NOW + 30}


def test_parse_skips_a_kind_it_cannot_read_and_keeps_one_without_its_limit() -> None:
    parsed = RateLimitHeaders.parse(
        headers("requests", None, "0") | headers("tokens", "x", "12") | headers("input-tokens", "9", "many")
    )
    assert parsed.remaining == {"requests": 0, "tokens": 12}  # no number of input tokens left: skipped
    assert parsed.limits == {}  # none given, or not a number


@pytest.mark.parametrize(
    ("limit", "remaining", "margin", "wait"),
    [
        # A drained bucket of 400,000 tokens a minute has 1000 back in 60 * 1000 / 400000 s.
        ("400000", "0", 1000, 0.15),
        # 49 left of 80,000, reset 60 s away: 951 more come in 60 * 951 / 79951 s.
        ("80000", "49", 1000, 60 * 951 / 79951),
        # One request of 50 a minute comes back every 1.2 s.
        ("50", "0", 1, 1.2),
        # At or over the margin: no wait.
        ("50", "1", 1, 0.0),
        ("80000", "1000", 1000, 0.0),
        # Without the budget's size (or a size that says nothing), wait for the whole reset.
        (None, "0", 1, 60.0),
        ("0", "0", 1, 60.0),
    ],
)
def test_a_low_budget_waits_until_it_has_refilled_past_the_margin(
    limit: str | None, remaining: str, margin: int, wait: float
) -> None:
    parsed = RateLimitHeaders.parse(headers("tokens", limit, remaining))
    assert parsed.refill_wait_s("tokens", margin, NOW) == pytest.approx(wait)


def test_a_margin_above_the_whole_budget_waits_for_the_reset_no_longer() -> None:
    parsed = RateLimitHeaders.parse(headers("requests", "5", "0"))
    assert parsed.refill_wait_s("requests", 50, NOW) == pytest.approx(60.0)


def test_a_reset_already_past_waits_nothing() -> None:
    parsed = RateLimitHeaders.parse(headers("requests", "5", "0", "2027-01-15T07:59:00Z"))
    assert parsed.refill_wait_s("requests", 1, NOW) == 0.0
