"""The Anthropic SDK behind a small interface; knows nothing of RQ, Redis or Flask."""

from service.llm.client import LLMClient, LLMReply, LLMRequest
from service.llm.errors import LLMError
from service.llm.pricing import cost_usd, is_priced
from service.llm.stop_token import Stopped, StopToken

__all__ = ["LLMClient", "LLMError", "LLMReply", "LLMRequest", "StopToken", "Stopped", "cost_usd", "is_priced"]
