"""What a call costs: the one price table, absolute USD per million tokens per model.

Every figure is the provider's own, per model: cache prices are not the same multiple of
the input price everywhere (Claude Fable 5.1 reads its cache at 0.025x its input price,
Claude Opus 5.5 at 0.05x), so none is derived from another. A usage the table cannot price
(a model it does not know, a cache figure it lacks, a fast-mode or regional premium) costs
None: never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelPrice:
    """A model's prices in USD per million tokens; None: not known (a usage that needs it is not priced)."""

    input: float
    output: float  # thinking tokens are inside output_tokens: priced once, as output
    cache_write_5m: float | None = None
    cache_write_1h: float | None = None
    cache_read: float | None = None


# From the pricing page and the model pages on platform.claude.com (read 2026-12-06; Claude
# Sonnet 5.5's cache read was cut to $0.10 on 2026-10-07). Models missing here cost `None`
# until LLM_PRICES names them.
PRICES_USD_PER_MTOK: dict[str, ModelPrice] = {
    "claude-fable-5-1": ModelPrice(10.0, 50.0, 12.5, 20.0, 0.25),
    "claude-opus-5-5": ModelPrice(4.0, 20.0, 5.0, 8.0, 0.20),
    "claude-sonnet-5-5": ModelPrice(2.0, 10.0, 2.5, 4.0, 0.10),
    "claude-opus-5": ModelPrice(5.0, 25.0, 6.25, 10.0, 0.50),
    "claude-sonnet-5": ModelPrice(2.0, 10.0, 2.5, 4.0, 0.20),
    "claude-opus-4-6": ModelPrice(5.0, 25.0, 6.25, 10.0, 0.50),
    "claude-sonnet-4-6": ModelPrice(3.0, 15.0, 3.75, 6.0, 0.30),
    "claude-opus-4-5": ModelPrice(5.0, 25.0, 6.25, 10.0, 0.50),
    "claude-sonnet-4-5": ModelPrice(3.0, 15.0, 3.75, 6.0, 0.30),
    "claude-haiku-4-5": ModelPrice(1.0, 5.0, 1.25, 2.0, 0.10),
    "claude-opus-4-1": ModelPrice(15.0, 75.0, 18.75, 30.0, 1.50),
}
# The Message Batches API bills every token (cache included) at half price; its usage says so.
BATCH_DISCOUNT = 0.5
# Web search is billed per search ($10 per 1,000), beside its tokens.
WEB_SEARCH_USD = 0.01
# A snapshot id is its family plus a date or "latest": claude-haiku-4-5-20251001.
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{8}|latest)$")

Prices = Mapping[str, ModelPrice]


def price_for(model: str, overrides: Prices | None = None) -> ModelPrice | None:
    """The model's absolute prices (USD per million tokens), or None when it has none."""
    table = {**PRICES_USD_PER_MTOK, **(overrides or {})}
    return table.get(model) or table.get(_SNAPSHOT_SUFFIX.sub("", model))


def is_priced(model: str, overrides: Prices | None = None) -> bool:
    return price_for(model, overrides) is not None


def cost_usd(model: str, usage: Mapping[str, Any], overrides: Prices | None = None) -> float | None:
    """Cost of one call from its usage as the provider reports it (`input_tokens`,
    `output_tokens`, `cache_creation_input_tokens` with its 5 min / 1 h split in
    `cache_creation`, `cache_read_input_tokens`, `server_tool_use`, `service_tier`,
    `speed`), or None when the table cannot price it."""
    price = price_for(model, overrides)
    if price is None or usage.get("speed") not in (None, "standard"):
        return None  # fast mode has premium prices of its own
    if usage.get("inference_geo") not in (None, "global", "not_available"):
        return None  # regional inference costs a premium the table does not hold
    figures: list[tuple[int, float | None]] = [
        (usage.get("input_tokens") or 0, price.input),
        (usage.get("output_tokens") or 0, price.output),
        *_cache_figures(usage, price),
    ]
    if any(rate is None and tokens for tokens, rate in figures):
        return None
    total = sum(tokens * (rate or 0) for tokens, rate in figures) / 1_000_000
    if usage.get("service_tier") == "batch":
        total *= BATCH_DISCOUNT
    searches = (usage.get("server_tool_use") or {}).get("web_search_requests") or 0
    return round(total + searches * WEB_SEARCH_USD, 8)


def _cache_figures(usage: Mapping[str, Any], price: ModelPrice) -> list[tuple[int, float | None]]:
    written = usage.get("cache_creation_input_tokens") or 0
    split = usage.get("cache_creation") or {}
    five_min, one_hour = split.get("ephemeral_5m_input_tokens") or 0, split.get("ephemeral_1h_input_tokens") or 0
    figures: list[tuple[int, float | None]] = [
        (usage.get("cache_read_input_tokens") or 0, price.cache_read),
        (five_min, price.cache_write_5m),
        (one_hour, price.cache_write_1h),
    ]
    if written > five_min + one_hour:
        # Writes the provider did not split by lifetime: priced only when both lifetimes cost the same.
        same = price.cache_write_5m if price.cache_write_5m == price.cache_write_1h else None
        figures.append((written - five_min - one_hour, same))
    return figures
