"""The Anthropic SDK behind a small interface; knows nothing of RQ or Flask.

The client and its errors (and with them the anthropic SDK, seconds of CPU and tens of MB to
import) load on first use: the API process reads only prices (the worst case a spend budget
reserves) and never needs them."""

import importlib
from typing import TYPE_CHECKING

from service.llm.pricing import cost_usd, is_priced

if TYPE_CHECKING:
    from service.llm.client import CallUsage, LLMClient, LLMReply, LLMRequest
    from service.llm.errors import LLMError

__all__ = ["CallUsage", "LLMClient", "LLMError", "LLMReply", "LLMRequest", "cost_usd", "is_priced"]
_LAZY = {
    "CallUsage": "client",
    "LLMClient": "client",
    "LLMReply": "client",
    "LLMRequest": "client",
    "LLMError": "errors",
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
