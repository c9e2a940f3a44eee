"""The Anthropic SDK behind a small interface; knows nothing of RQ or Flask."""

from service.llm.client import CallUsage, LLMClient, LLMReply, LLMRequest
from service.llm.errors import LLMError
from service.llm.pricing import ModelPrice, cost_usd, is_priced, price_for

__all__ = [
    "CallUsage", "LLMClient", "LLMError", "LLMReply", "LLMRequest", "ModelPrice", "cost_usd", "is_priced", "price_for",
]  # fmt: skip
