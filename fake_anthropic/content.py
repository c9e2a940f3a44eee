"""What a request carries, read as the real API reads it: every content block checked (a bad
image or PDF is the provider's 400 `invalid_request_error`), and the request cut into the
segments that count as input and that the prompt cache sees (tools, then system, then
messages, in that order; a `cache_control` marks a breakpoint after its block).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from .wire import InvalidRequest

IMAGE_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
PDF_MAGIC = b"%PDF-"
BYTES_PER_IMAGE_TOKEN = 64  # an image counts as input by its size (the real API: width x height / 750)
URL_SOURCE_TOKENS = 1000  # a source the fake does not fetch counts this much
# Block types a request may carry; the fake reads text, images and documents, and counts the rest as text.
BLOCK_TYPES = frozenset(
    {
        "text", "image", "document", "search_result", "thinking", "redacted_thinking", "tool_use", "tool_result",
        "server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
        "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "tool_search_tool_result",
        "container_upload", "mcp_tool_use", "mcp_tool_result",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Segment:
    """A piece of the prompt: how many characters it counts as, what the cache keys it by,
    and, at a breakpoint, the lifetime its cache entry gets."""

    chars: int
    material: str
    ttl: str | None = None  # "5m" or "1h": a cache breakpoint after this segment


def _ttl(block: Any) -> str | None:
    control = block.get("cache_control") if isinstance(block, dict) else None
    if not isinstance(control, dict):
        return None
    if control.get("type") != "ephemeral" or control.get("ttl", "5m") not in ("5m", "1h"):
        raise InvalidRequest("cache_control: Input should be {'type': 'ephemeral', 'ttl': '5m' | '1h'}")
    return control.get("ttl", "5m")


def _decoded(source: dict[str, Any], where: str) -> bytes:
    try:
        return base64.b64decode(source.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidRequest(f"{where}.source.data: not valid base64") from None


def _source_chars(block: dict[str, Any], where: str) -> int:
    """An image or document block: checked, and the characters its content counts as."""
    source = block.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("type"), str):
        raise InvalidRequest(f"{where}.source: Field required")
    kind, media_type = source["type"], source.get("media_type")
    if kind in ("url", "file"):
        return URL_SOURCE_TOKENS * 4
    if kind == "text" and block["type"] == "document":
        return len(str(source.get("data", "")))
    if kind == "content" and block["type"] == "document":
        return len(json.dumps(source.get("content", "")))
    if kind != "base64":
        raise InvalidRequest(f"{where}.source.type: Input should be 'base64', 'url', 'file', 'text' or 'content'")
    data = _decoded(source, where)
    if block["type"] == "image":
        if media_type not in IMAGE_MAGIC:
            raise InvalidRequest(f"{where}.source.media_type: Input should be one of {sorted(IMAGE_MAGIC)}")
        if not data.startswith(IMAGE_MAGIC[media_type]):
            raise InvalidRequest(f"{where}.source: Image does not match the provided media type {media_type}")
        return max(4, len(data) // BYTES_PER_IMAGE_TOKEN * 4)
    if media_type != "application/pdf":
        raise InvalidRequest(f"{where}.source.media_type: Input should be 'application/pdf'")
    if not data.startswith(PDF_MAGIC):
        raise InvalidRequest(f"{where}.source.data: The PDF specified was not valid.")
    return len(data)


def _block_segment(block: Any, where: str) -> tuple[Segment, str]:
    """A content block's segment, and its text as a directive may be read from."""
    if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
        raise InvalidRequest(f"{where}: Input tag {block.get('type') if isinstance(block, dict) else block!r} "
                             f"does not match any of the expected tags")  # fmt: skip
    kind, ttl = block["type"], _ttl(block)
    material = json.dumps({k: v for k, v in block.items() if k != "cache_control"}, sort_keys=True)
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}.text: Field required (must be a string)")
        return Segment(len(block["text"]), material, ttl), block["text"]
    if kind in ("image", "document"):
        return Segment(_source_chars(block, where), material, ttl), ""
    if kind == "tool_use" and not isinstance(block.get("input"), dict):
        raise InvalidRequest(f"{where}.input: Input should be a valid dictionary")
    return Segment(len(material), material, ttl), ""


@dataclass
class Prompt:
    segments: list[Segment]
    last_user_text: str  # where directives live

    @property
    def chars(self) -> int:
        return sum(segment.chars for segment in self.segments)


def read_prompt(body: dict[str, Any]) -> Prompt:
    """The request's prompt in cache order; raises InvalidRequest as the real API would."""
    segments: list[Segment] = []
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"tools.{i}.name: Field required")
        material = json.dumps({k: v for k, v in tool.items() if k != "cache_control"}, sort_keys=True)
        segments.append(Segment(len(material), material, _ttl(tool)))
    system = body.get("system")
    if isinstance(system, str):
        segments.append(Segment(len(system), system))
    elif isinstance(system, list):
        segments += [_block_segment(block, f"system.{i}")[0] for i, block in enumerate(system)]
    elif system is not None:
        raise InvalidRequest("system: Input should be a valid string or a list of text blocks")
    last_user_text = ""
    for i, message in enumerate(body["messages"]):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages.{i}: Input should be an object")
        if message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise InvalidRequest(f"messages.{i}.content: Field required")
        content = message["content"]
        if isinstance(content, str):
            segments.append(Segment(len(content), json.dumps([message["role"], content])))
            texts = [content]
        elif isinstance(content, list):
            read = [_block_segment(block, f"messages.{i}.content.{j}") for j, block in enumerate(content)]
            segments += [segment for segment, _ in read]
            texts = [text for _, text in read if text]
        else:
            raise InvalidRequest(f"messages.{i}.content: Input should be a valid string or a list of content blocks")
        if message["role"] == "user":
            last_user_text = "\n".join(texts)
    top = _ttl(body)
    if top is not None and segments:  # top-level cache_control: a breakpoint after the last cacheable block
        segments[-1] = Segment(segments[-1].chars, segments[-1].material, top)
    return Prompt(segments, last_user_text)
