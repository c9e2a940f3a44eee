"""What a call costs: the one price table, in USD per million tokens."""

from __future__ import annotations

import re

# (input, output) USD per million tokens, from the model pages on platform.claude.com
# (read 2026-11-21). Models missing here cost `None` until LLM_PRICES names them.
# Prompt-cache reads and writes are priced differently and are not counted: the
# service sends no cache_control.
PRICES_USD_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-fable-5-1": (10.0, 50.0),
    "claude-opus-5-5": (4.0, 20.0),
    "claude-sonnet-5-5": (2.0, 10.0),
    "claude-opus-5": (5.0, 25.0),
    "claude-sonnet-5": (2.0, 10.0),
    "claude-opus-4-6": (5.0, 25.0),
    "claude-sonnet-4-6": (3.0, 15.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-opus-4-1": (15.0, 75.0),
}
# A snapshot id is its family plus a date or "latest": claude-haiku-4-5-20251001.
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{8}|latest)$")


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    overrides: dict[str, tuple[float, float]] | None = None,
) -> float | None:
    """Cost of one call, or None for a model with no known price (never a guess)."""
    prices = _prices(model, overrides)
    if prices is None:
        return None
    input_price, output_price = prices
    return round((input_tokens * input_price + output_tokens * output_price) / 1_000_000, 8)


def is_priced(model: str, overrides: dict[str, tuple[float, float]] | None = None) -> bool:
    return _prices(model, overrides) is not None


def _prices(model: str, overrides: dict[str, tuple[float, float]] | None) -> tuple[float, float] | None:
    table = {**PRICES_USD_PER_MTOK, **(overrides or {})}
    return table.get(model) or table.get(_SNAPSHOT_SUFFIX.sub("", model))
