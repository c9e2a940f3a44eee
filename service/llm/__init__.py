"""The Anthropic SDK behind a small interface; knows nothing of RQ or Flask."""

from service.llm.client import CallUsage, LLMClient, LLMReply, LLMRequest
from service.llm.errors import LLMError
from service.llm.pricing import cost_usd, is_priced

__all__ = ["CallUsage", "LLMClient", "LLMError", "LLMReply", "LLMRequest", "cost_usd", "is_priced"]
