"""The Message assembled from raw stream events (service/llm/message.py) is the one the SDK's
own accumulator (`accumulate_event`, which the worker does not run: a pydantic model per event)
makes of the same events: every block type, stop fields and the usage merge."""

from __future__ import annotations

import copy
import json
from typing import Any

from anthropic.lib.streaming._messages import accumulate_event

from service.llm.message import MessageAssembler, message_text

START = {
    "type": "message_start",
    "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {
            "input_tokens": 10, "output_tokens": 1, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "service_tier": "standard",
        },
    },
}  # fmt: skip
CITATION = {
    "type": "char_location", "cited_text": "revenue grew", "document_index": 0, "document_title": "report",
    "start_char_index": 0, "end_char_index": 12,
}  # fmt: skip
SEARCH_RESULT = {
    "type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
    "content": [{"type": "web_search_result", "url": "https://example.com", "title": "Example",
                 "encrypted_content": "abc", "page_age": None}],
}  # fmt: skip


def block(index: int, content_block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": content_block}


def delta(index: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": body}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


EVENTS = [
    START,
    block(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "Let me "}),
    delta(0, {"type": "thinking_delta", "thinking": "look."}),
    delta(0, {"type": "signature_delta", "signature": "sig_abc"}),
    stop(0),
    block(1, {"type": "redacted_thinking", "data": "opaque"}),
    stop(1),
    block(2, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
    delta(2, {"type": "input_json_delta", "partial_json": '{"query": "rev'}),
    delta(2, {"type": "input_json_delta", "partial_json": 'enue"}'}),
    stop(2),
    block(3, SEARCH_RESULT),
    stop(3),
    block(4, {"type": "text", "text": "", "citations": None}),
    delta(4, {"type": "text_delta", "text": "Revenue "}),
    delta(4, {"type": "citations_delta", "citation": CITATION}),
    delta(4, {"type": "text_delta", "text": "grew."}),
    stop(4),
    block(5, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
    delta(5, {"type": "input_json_delta", "partial_json": '{"city": "Paris", "days": [1, 2]}'}),
    stop(5),
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None, "stop_details": None},
        "usage": {
            "input_tokens": 10,
            "output_tokens": 42,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 0,
            "server_tool_use": {"web_search_requests": 1},
            "output_tokens_details": {"thinking_tokens": 5},
        },
    },
    {"type": "message_stop"},
]


def assembled(events: list[dict[str, Any]]) -> dict[str, Any]:
    assembler = MessageAssembler()
    for event in copy.deepcopy(events):
        kind = event["type"]
        if kind == "message_start":
            assembler.start(event["message"])
        elif kind == "content_block_start":
            assembler.block_start(event["index"], event["content_block"])
        elif kind == "content_block_delta":
            assembler.delta(event["index"], event["delta"])
        elif kind == "content_block_stop":
            assembler.block_stop(event["index"])
        elif kind == "message_delta":
            assembler.message_delta(event)
    return assembler.finish()


def by_the_sdk(events: list[dict[str, Any]]) -> dict[str, Any]:
    snapshot, buffers = None, {}
    for event in copy.deepcopy(events):
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)  # type: ignore[arg-type]
    assert snapshot is not None
    return json.loads(snapshot.to_json(exclude_none=True))


def without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_none(item) for item in value]
    return value


def test_every_block_and_field_is_what_the_sdk_accumulates():
    ours = assembled(EVENTS)

    assert without_none(ours) == by_the_sdk(EVENTS)
    thinking, redacted, server_use, result, text, tool_use = ours["content"]
    assert (thinking["thinking"], thinking["signature"]) == ("Let me look.", "sig_abc")
    assert redacted == {"type": "redacted_thinking", "data": "opaque"}
    assert server_use["input"] == {"query": "revenue"} and result == SEARCH_RESULT
    assert text["citations"] == [CITATION] and message_text(ours) == "Revenue grew."
    assert tool_use["input"] == {"city": "Paris", "days": [1, 2]}


def test_the_usage_keeps_the_cache_split_of_message_start_and_the_cumulative_counts_of_message_delta():
    usage = assembled(EVENTS)["usage"]

    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}
    assert (usage["output_tokens"], usage["server_tool_use"]) == (42, {"web_search_requests": 1})
    assert usage["output_tokens_details"] == {"thinking_tokens": 5} and usage["service_tier"] == "standard"


def test_a_tool_use_without_input_deltas_keeps_its_empty_input():
    events = [START, block(0, {"type": "tool_use", "id": "t", "name": "n", "input": {}}), stop(0)]

    assert assembled(events)["content"] == [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]
