"""The Message a stream describes, assembled from its raw events as JSON.

Mirrors the SDK's own `accumulate_event` (anthropic/lib/streaming/_messages.py) without
building a pydantic model per event: the worker reads hundreds of streams at once, and
the typed path costs ~15 % of its CPU (bench/RESULTS.md). A block's streamed pieces are
kept as lists and joined when the block stops, so a long reply is not copied per delta.
"""

from __future__ import annotations

import json
from typing import Any

# Blocks whose `input` arrives as `input_json_delta` pieces of one JSON text.
TOOL_INPUT_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
# Delta type -> the block field its pieces are joined into.
JOINED_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}
# Only `message_start` reports these; `message_delta`'s cumulative usage leaves them out.
START_ONLY_USAGE = ("cache_creation", "service_tier", "inference_geo", "speed")


class MalformedToolInput(ValueError):
    """A tool_use block whose streamed input is not JSON."""


class MessageAssembler:
    """Feed it a stream's events in order (`start`, then `block_start` / `delta` /
    `block_stop` per block, then `finish`); `message` is the Message as the provider sent it."""

    def __init__(self) -> None:
        self.message: dict[str, Any] = {}
        self._pieces: dict[int, dict[str, list[str]]] = {}  # block index -> field -> pieces

    @property
    def usage(self) -> dict[str, Any]:
        return self.message.setdefault("usage", {})

    def start(self, message: dict[str, Any]) -> None:
        self.message = message
        message["content"] = []

    def block_start(self, index: int, block: dict[str, Any]) -> None:
        content = self.message["content"]
        while len(content) <= index:  # indexes are dense and in order; never trust that blindly
            content.append({})
        content[index] = block

    def delta(self, index: int, delta: dict[str, Any]) -> None:
        kind = delta.get("type")
        if (field := JOINED_FIELDS.get(kind or "")) is not None:
            self._pieces.setdefault(index, {}).setdefault(field, []).append(delta[field])
            return
        block = self.message["content"][index]
        if kind == "citations_delta":
            if not block.get("citations"):
                block["citations"] = []
            block["citations"].append(delta["citation"])
        elif kind == "signature_delta":
            block["signature"] = delta["signature"]

    def block_stop(self, index: int) -> None:
        block = self.message["content"][index]
        for field, pieces in self._pieces.pop(index, {}).items():
            joined = "".join(pieces)
            if field != "partial_json":
                block[field] = block.get(field, "") + joined
            elif block.get("type") in TOOL_INPUT_BLOCKS and joined:
                try:
                    block["input"] = json.loads(joined)
                except ValueError as exc:
                    raise MalformedToolInput(f"the provider streamed a tool input that is not JSON: {exc}") from None

    def message_delta(self, data: dict[str, Any]) -> None:
        delta = data.get("delta") or {}
        for name in ("stop_reason", "stop_sequence", "stop_details"):
            if name in delta:
                self.message[name] = delta[name]
        if delta.get("container") is not None:
            self.message["container"] = delta["container"]
        # Cumulative counts: they overwrite; one left out keeps message_start's figure.
        for name, value in (data.get("usage") or {}).items():
            if value is not None and name not in START_ONLY_USAGE:
                self.usage[name] = value

    def finish(self) -> dict[str, Any]:
        """The message; a block the stream never stopped keeps what arrived of it."""
        for index in list(self._pieces):
            self.block_stop(index)
        return self.message


def message_text(message: dict[str, Any]) -> str:
    """The text blocks of a message, joined."""
    return "".join(block.get("text", "") for block in message.get("content", ()) if block.get("type") == "text")
