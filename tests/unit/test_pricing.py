"""The price table and cost arithmetic."""

import pytest

from service.llm.pricing import PRICES_USD_PER_MTOK, cost_usd, is_priced


def test_cost_uses_input_and_output_prices():
    # claude-sonnet-5-5: $2 in, $10 out per million tokens
    assert cost_usd("claude-sonnet-5-5", 1_000_000, 1_000_000) == pytest.approx(12.0)
    assert cost_usd("claude-sonnet-5-5", 1000, 200) == pytest.approx(0.002 + 0.002)


def test_snapshot_ids_use_their_family_price():
    assert cost_usd("claude-haiku-4-5-20251001", 1_000_000, 0) == PRICES_USD_PER_MTOK["claude-haiku-4-5"][0]
    assert cost_usd("claude-opus-4-1-latest", 0, 1_000_000) == PRICES_USD_PER_MTOK["claude-opus-4-1"][1]
    # a longer family name is not mistaken for a shorter one's snapshot
    assert cost_usd("claude-sonnet-5-5", 0, 1_000_000) == PRICES_USD_PER_MTOK["claude-sonnet-5-5"][1]


def test_configured_prices_override_and_extend_the_table():
    overrides = {"claude-sonnet-5-5": (1.0, 2.0), "my-model": (10.0, 20.0)}
    assert cost_usd("claude-sonnet-5-5", 1_000_000, 1_000_000, overrides) == pytest.approx(3.0)
    assert cost_usd("my-model", 500_000, 0, overrides) == pytest.approx(5.0)


def test_unknown_model_has_no_cost_rather_than_a_guess():
    assert cost_usd("gpt-whatever", 10, 10) is None
    assert cost_usd("claude-sonnet-5x", 10, 10) is None
    assert cost_usd("claude-sonnet-5-9", 10, 10) is None  # not a snapshot of claude-sonnet-5


def test_a_model_is_priced_exactly_when_it_has_a_cost():
    overrides = {"my-model": (10.0, 20.0)}
    for model in ("claude-haiku-4-5", "claude-haiku-4-5-20251001", "my-model", "gpt-whatever", "claude-sonnet-5-9"):
        assert is_priced(model, overrides) == (cost_usd(model, 1, 1, overrides) is not None)
    assert is_priced("claude-haiku-4-5-20251001") and not is_priced("my-model") and is_priced("my-model", overrides)
