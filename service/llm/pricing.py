"""What a call costs: the one price table, in USD per million tokens."""

from __future__ import annotations

# (input, output) USD per million tokens, from Anthropic's public price list.
# Dated model ids ("claude-sonnet-4-5-20250929") match their family by prefix.
PRICES_USD_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-haiku": (0.25, 1.25),
}


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    overrides: dict[str, tuple[float, float]] | None = None,
) -> float | None:
    """Cost of one call, or None for a model with no known price (never a guess)."""
    table = {**PRICES_USD_PER_MTOK, **(overrides or {})}
    family = max((name for name in table if model == name or model.startswith(name + "-")), key=len, default=None)
    if family is None:
        return None
    input_price, output_price = table[family]
    return round((input_tokens * input_price + output_tokens * output_price) / 1_000_000, 8)
