"""The price table and cost arithmetic: absolute prices per model, every usage figure priced
once, and None (never a guess) for what the table cannot price."""

import pytest

from service.llm.pricing import PRICES_USD_PER_MTOK, ModelPrice, cost_usd, is_priced, price_for

MTOK = 1_000_000


def usage(input_tokens=0, output_tokens=0, **more):
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, **more}


def test_cost_uses_input_and_output_prices():
    # claude-sonnet-5-5: $2 in, $10 out per million tokens
    assert cost_usd("claude-sonnet-5-5", usage(MTOK, MTOK)) == pytest.approx(12.0)
    assert cost_usd("claude-sonnet-5-5", usage(1000, 200)) == pytest.approx(0.002 + 0.002)


def test_cache_writes_by_lifetime_and_reads_are_priced_apart_at_the_models_own_prices():
    written = {"ephemeral_5m_input_tokens": MTOK, "ephemeral_1h_input_tokens": 2 * MTOK}
    cached = usage(0, 0, cache_creation_input_tokens=3 * MTOK, cache_creation=written, cache_read_input_tokens=4 * MTOK)
    # Fable 5.1: writes $12.50 (5 min) and $20 (1 h), reads $0.25: 0.025x its input price, not 0.1x
    assert cost_usd("claude-fable-5-1", cached) == pytest.approx(12.5 + 2 * 20 + 4 * 0.25)
    # Opus 5.5: $5, $8, $0.20
    assert cost_usd("claude-opus-5-5", cached) == pytest.approx(5 + 2 * 8 + 4 * 0.2)


def test_thinking_tokens_are_inside_the_output_count_and_priced_once():
    thought = usage(0, MTOK, output_tokens_details={"thinking_tokens": MTOK // 2})
    assert cost_usd("claude-sonnet-5-5", thought) == pytest.approx(10.0)


def test_the_batch_tier_is_half_price_and_web_searches_are_priced_per_search():
    assert cost_usd("claude-sonnet-5-5", usage(MTOK, MTOK, service_tier="batch")) == pytest.approx(6.0)
    assert cost_usd("claude-sonnet-5-5", usage(0, 0, server_tool_use={"web_search_requests": 3})) == pytest.approx(0.03)


@pytest.mark.parametrize(
    "figures",
    [
        pytest.param({"speed": "fast"}, id="fast-mode"),
        pytest.param({"inference_geo": "us"}, id="regional-inference"),
        pytest.param({"cache_creation_input_tokens": 10}, id="writes-not-split-by-lifetime"),
    ],
)
def test_a_usage_the_table_cannot_price_has_no_cost(figures):
    assert cost_usd("claude-sonnet-5-5", usage(10, 10, **figures)) is None


def test_a_model_without_cache_prices_is_priced_until_it_uses_the_cache():
    overrides = {"my-model": ModelPrice(10.0, 20.0)}
    assert cost_usd("my-model", usage(MTOK // 2, 0), overrides) == pytest.approx(5.0)
    assert cost_usd("my-model", usage(1, 1, cache_read_input_tokens=5), overrides) is None


def test_snapshot_ids_use_their_family_price():
    assert cost_usd("claude-haiku-4-5-20251001", usage(MTOK)) == PRICES_USD_PER_MTOK["claude-haiku-4-5"].input
    assert cost_usd("claude-opus-4-1-latest", usage(0, MTOK)) == PRICES_USD_PER_MTOK["claude-opus-4-1"].output
    # a longer family name is not mistaken for a shorter one's snapshot
    assert price_for("claude-sonnet-5-5") == PRICES_USD_PER_MTOK["claude-sonnet-5-5"] != price_for("claude-sonnet-5")


def test_configured_prices_override_and_extend_the_table():
    overrides = {"claude-sonnet-5-5": ModelPrice(1.0, 2.0), "my-model": ModelPrice(10.0, 20.0)}
    assert cost_usd("claude-sonnet-5-5", usage(MTOK, MTOK), overrides) == pytest.approx(3.0)
    assert price_for("my-model", overrides) == ModelPrice(10.0, 20.0)


def test_unknown_model_has_no_cost_rather_than_a_guess():
    assert cost_usd("gpt-whatever", usage(10, 10)) is None
    assert cost_usd("claude-sonnet-5x", usage(10, 10)) is None
    assert cost_usd("claude-sonnet-5-9", usage(10, 10)) is None  # not a snapshot of claude-sonnet-5


def test_a_model_is_priced_exactly_when_it_has_a_cost():
    overrides = {"my-model": ModelPrice(10.0, 20.0)}
    for model in ("claude-haiku-4-5", "claude-haiku-4-5-20251001", "my-model", "gpt-whatever", "claude-sonnet-5-9"):
        assert is_priced(model, overrides) == (cost_usd(model, usage(1, 1), overrides) is not None)
    assert is_priced("claude-haiku-4-5-20251001") and not is_priced("my-model") and is_priced("my-model", overrides)


def test_every_model_of_the_table_has_every_price():
    assert all(None not in vars(price).values() for price in PRICES_USD_PER_MTOK.values())
