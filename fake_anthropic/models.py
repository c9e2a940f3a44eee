"""The model ids the fake accepts: the real API's current ones, so a typo in a model name
fails in development as it would in production (404 `not_found_error`, "model: <id>").

Kept by hand from the models overview on platform.claude.com (read 2026-11-21), the
same list service/llm/pricing.py prices. A dated snapshot of one of them
(`claude-haiku-4-5-20251001`) is accepted too.
"""

from __future__ import annotations

import re

MODELS = frozenset(
    {
        "claude-fable-5-1",
        "claude-opus-5-5",
        "claude-sonnet-5-5",
        "claude-opus-5",
        "claude-sonnet-5",
        "claude-opus-4-6",
        "claude-sonnet-4-6",
        "claude-opus-4-5",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-1",
    }
)
_SNAPSHOT = re.compile(r"-\d{8}$")


def is_known_model(model: str) -> bool:
    return model in MODELS or _SNAPSHOT.sub("", model) in MODELS
