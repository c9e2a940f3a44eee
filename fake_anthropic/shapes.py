"""Replies in the shape a prompt asks for, so that document analyses (which check their
JSON) can be tested end to end.

A prompt that says `Reply with JSON only, shaped like: <JSON example>` gets JSON of that
shape: a string of several words becomes as many fake words (one-word strings, like an
enum's value, are kept), a list gets three items shaped like its first, numbers and
booleans are kept. `Reply with JSON only.` alone gets a list of strings when the prompt
speaks of a list or an array, else `{"answer": "..."}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .wire import generate_tokens

SHAPED = re.compile(r"Reply with JSON only, shaped like: (.+)$", re.MULTILINE)
ASKS_JSON = "Reply with JSON only"
LIST_WORDS = re.compile(r"\b(list|array)\b", re.IGNORECASE)
LIST_ITEMS = 3


def json_reply(prompt: str, words: int) -> str | None:
    """The JSON text `prompt` asks for (strings of `words` words), or None when it asks for no JSON."""
    example: Any = None
    if match := SHAPED.search(prompt):
        try:
            example = json.loads(match.group(1))
        except ValueError:
            example = None
    if example is None and ASKS_JSON in prompt:
        example = ["an item"] if LIST_WORDS.search(prompt) else {"answer": "the answer"}
    if example is None:
        return None
    return json.dumps(_fill(example, max(1, words)))


def _fill(example: Any, words: int) -> Any:
    if isinstance(example, str):
        return example if " " not in example.strip() else "".join(generate_tokens(words)).strip()
    if isinstance(example, list):
        return [_fill(example[0], words) for _ in range(LIST_ITEMS)] if example else []
    if isinstance(example, dict):
        return {key: _fill(value, words) for key, value in example.items()}
    return example


def as_tokens(text: str) -> list[str]:
    """Text as stream deltas: a word and the space after it, each."""
    return re.findall(r"\S+\s*", text) or [text]
