"""The reply a request gets, as content blocks streamed one delta (one output token) at a time.

- `thinking` enabled or adaptive: a thinking block first (`thinking_delta`s, then its
  `signature_delta`), its tokens inside `output_tokens` and `output_tokens_details`;
- `tool_choice` `tool` (the named tool) or `any` (the first tool), or `auto` with the
  directive `tool_use=1`: a `tool_use` block whose input fits the tool's `input_schema`,
  streamed as `input_json_delta` pieces, `stop_reason: tool_use`;
- `output_config.format` `json_schema`: text that is JSON of that schema (a 400 with the
  directive `no_structured=1`, as from a model without structured outputs);
- otherwise text, shaped as the prompt asks (shapes.py) or fake words; when a plain-text
  document asks for citations, the text cites its first 40 characters (a `citations_delta`
  before the text, a `char_location` citation);
- `stop_sequences` cut the text before the first one found (`stop_reason: stop_sequence`);
  `max_tokens` cuts every block's deltas together (`stop_reason: max_tokens`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .directives import Directives
from .shapes import LIST_ITEMS, as_tokens, json_reply
from .wire import InvalidRequest, generate_tokens, new_id

THINKING_WORDS = ("Let", "me", "think", "this", "through", "step", "by", "step.")
JSON_PIECE = 8  # characters of a tool input per input_json_delta


@dataclass
class Block:
    start: dict[str, Any]  # content_block_start's block
    deltas: list[dict[str, Any]] = field(default_factory=list)  # one output token each
    signature: str | None = None  # a thinking block's, sent after its deltas
    citations: list[dict[str, Any]] = field(default_factory=list)  # a text block's, sent before its text

    def final(self) -> dict[str, Any]:
        """The block as a non-streamed reply gives it."""
        block = dict(self.start)
        for delta in self.deltas:
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
        if self.signature is not None:
            block["signature"] = self.signature
        if self.citations:
            block["citations"] = list(self.citations)
        if block["type"] == "tool_use":
            text = "".join(delta["partial_json"] for delta in self.deltas)
            block["input"] = json.loads(text) if text else {}
        return block


@dataclass
class Reply:
    blocks: list[Block]
    stop_reason: str
    stop_sequence: str | None
    thinking_tokens: int

    @property
    def output_tokens(self) -> int:
        return sum(len(block.deltas) for block in self.blocks)


def plan_reply(body: dict[str, Any], d: Directives, last_user_text: str) -> Reply:
    blocks: list[Block] = []
    thinking = body.get("thinking") or {}
    choice = body.get("tool_choice") or {}
    tool = _tool_to_use(body, choice, d)
    if thinking.get("type") in ("enabled", "adaptive"):
        if choice.get("type") in ("any", "tool"):
            raise InvalidRequest("Thinking may not be enabled when tool_choice forces tool use.")
        words = [f"{word} " for word in THINKING_WORDS]
        blocks.append(
            Block({"type": "thinking", "thinking": "", "signature": ""},
                  [{"type": "thinking_delta", "thinking": w} for w in words], signature=new_id("sig"))
        )  # fmt: skip
    thinking_tokens = sum(len(block.deltas) for block in blocks)
    stop_reason, stop_sequence = "end_turn", None
    if tool is not None:
        text = json.dumps(example_of(tool.get("input_schema") or {}, d.tokens))
        pieces = [text[i : i + JSON_PIECE] for i in range(0, len(text), JSON_PIECE)]
        start = {"type": "tool_use", "id": new_id("toolu"), "name": tool["name"], "input": {}}
        blocks.append(Block(start, [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]))
        stop_reason = "tool_use"
    else:
        tokens = _text_tokens(body, d, last_user_text)
        tokens, stop_sequence = _cut_at_stop_sequence(tokens, body.get("stop_sequences") or [])
        if stop_sequence is not None:
            stop_reason = "stop_sequence"
        answer = Block({"type": "text", "text": ""}, [{"type": "text_delta", "text": t} for t in tokens])
        answer.citations = _citations(body)
        blocks.append(answer)
    reply = Reply(blocks, stop_reason, stop_sequence, thinking_tokens)
    return _capped(reply, body["max_tokens"])


CITED_CHARS = 40  # how much of a cited document the citation quotes


def _citations(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The first plain-text document that asks for citations is cited, from its start (a
    `char_location`, as the real API cites plain text). `document_index` counts every document
    block of the request, in order."""
    documents = [
        block
        for message in body.get("messages") or []
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "document"
    ]
    for index, document in enumerate(documents):
        source = document.get("source") or {}
        if (document.get("citations") or {}).get("enabled") and source.get("type") == "text":
            quoted = source.get("data", "")[:CITED_CHARS]
            return [{"type": "char_location", "cited_text": quoted, "document_index": index,
                     "document_title": document.get("title"), "start_char_index": 0,
                     "end_char_index": len(quoted)}]  # fmt: skip
    return []


def _tool_to_use(body: dict[str, Any], choice: dict[str, Any], d: Directives) -> dict[str, Any] | None:
    tools = [tool for tool in body.get("tools") or [] if "input_schema" in tool]  # custom tools
    kind = choice.get("type")
    if kind == "tool":
        named = [tool for tool in tools if tool["name"] == choice.get("name")]
        if not named:
            raise InvalidRequest(f"tool_choice.name: Tool '{choice.get('name')}' not found in provided tools")
        return named[0]
    if kind == "any" or (kind in (None, "auto") and d.tool_use):
        if not tools:
            raise InvalidRequest("tool_choice: a tool must be used, but no tools were provided")
        return tools[0]
    return None


def _text_tokens(body: dict[str, Any], d: Directives, last_user_text: str) -> list[str]:
    output_format = (body.get("output_config") or {}).get("format") or {}
    if output_format and d.no_structured:
        raise InvalidRequest(f"output_config.format: structured outputs are not supported on {body['model']}")
    if output_format.get("type") == "json_schema":
        shaped: str | None = json.dumps(example_of(output_format.get("schema") or {}, d.tokens // 4))
    else:
        shaped = json_reply(last_user_text, d.tokens // 4)
    if shaped is not None and d.broken_json:
        shaped = shaped[: len(shaped) // 2]
    return as_tokens(shaped) if shaped is not None else generate_tokens(d.tokens)


def _cut_at_stop_sequence(tokens: list[str], sequences: list[str]) -> tuple[list[str], str | None]:
    text = ""
    for i, token in enumerate(tokens):
        text += token
        found = [(text.find(seq), seq) for seq in sequences if seq and seq in text]
        if found:
            at, sequence = min(found)
            kept = tokens[:i]
            before = text[:at][len("".join(kept)) :]
            return ([*kept, before] if before else kept), sequence
    return tokens, None


def _capped(reply: Reply, max_tokens: int) -> Reply:
    left = max_tokens
    capped = False
    for block in reply.blocks:
        if len(block.deltas) > left:
            block.deltas, capped = block.deltas[:left], True
        left -= len(block.deltas)
    if capped:
        reply.blocks = [block for block in reply.blocks if block.deltas or block is reply.blocks[0]]
        reply.stop_reason, reply.stop_sequence = "max_tokens", None
    reply.thinking_tokens = min(reply.thinking_tokens, max_tokens)
    return reply


def example_of(schema: dict[str, Any], words: int, root: dict[str, Any] | None = None) -> Any:
    """A value that fits `schema` (the JSON Schema subset tools and structured outputs use)."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return example_of((root.get("$defs") or root.get("definitions") or {}).get(name, {}), words, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("anyOf", "oneOf", "allOf"):
        if schema.get(union):
            return example_of(schema[union][0], words, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {name: example_of(sub, words, root) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        count = max(schema.get("minItems", 0), LIST_ITEMS)
        return [example_of(schema.get("items") or {}, words, root) for _ in range(count)]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1) if "maximum" not in schema else int(schema["maximum"])
    if kind == "number":
        return schema.get("minimum", 0.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "".join(generate_tokens(max(1, words))).strip()
