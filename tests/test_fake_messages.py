"""The fake speaks the whole Messages request like the real wire protocol, checked through the
real SDK's own typed stream and its MessageStream accumulator (which the service does not use:
an independent reading of the same events)."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import jsonschema_rs
import pytest
from werkzeug.serving import make_server

from fake_anthropic import create_app

MODEL = "claude-sonnet-5-5"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(6400)).decode()
PDF = base64.b64encode(b"%PDF-1.4\n" + b"x" * 4000).decode()
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}, "days": {"type": "integer"}},
        "required": ["city", "unit"],
    },
}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client() -> Iterator[anthropic.Anthropic]:
    server = make_server("127.0.0.1", 0, create_app(chunk_delay_s=0), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield anthropic.Anthropic(api_key="k", base_url=f"http://127.0.0.1:{server.port}", max_retries=0)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def streamed(client: anthropic.Anthropic, **params: Any) -> tuple[anthropic.types.Message, list[Any]]:
    """The final message as the SDK's MessageStream accumulates it, and every event."""
    params = {"model": MODEL, "max_tokens": 2000, **params}
    with client.messages.stream(**params) as stream:
        events = list(stream)
        return stream.get_final_message(), events


def user(content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize("choice", [{"type": "tool", "name": "get_weather"}, {"type": "any"}])
def test_a_forced_tool_is_called_with_an_input_that_fits_its_schema(client, choice):
    message, events = streamed(client, messages=user("weather?"), tools=[WEATHER], tool_choice=choice)

    (block,) = message.content
    assert (block.type, block.name, message.stop_reason) == ("tool_use", "get_weather", "tool_use")
    jsonschema_rs.validate(WEATHER["input_schema"], block.input)
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert len(deltas) > 1 and {d.type for d in deltas} == {"input_json_delta"}


def test_a_forced_tool_that_is_not_given_is_the_providers_400(client):
    with pytest.raises(anthropic.BadRequestError, match="not found"):
        streamed(client, messages=user("x"), tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"})


def test_structured_output_is_json_of_the_schema(client):
    output_config = {"format": {"type": "json_schema", "schema": PERSON}}

    message, _ = streamed(client, messages=user("who?"), output_config=output_config)

    jsonschema_rs.validate(PERSON, __import__("json").loads(message.content[0].text))


def test_thinking_comes_first_with_its_signature_and_counts_as_output(client):
    message, events = streamed(
        client, messages=user("think [[fake: tokens=5]]"), thinking={"type": "enabled", "budget_tokens": 1024}
    )

    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature.startswith("sig_")
    assert text.type == "text" and len(text.text.split()) == 5
    assert any(e.type == "content_block_delta" and e.delta.type == "signature_delta" for e in events)
    assert message.usage.output_tokens == 5 + message.usage.output_tokens_details.thinking_tokens


def test_a_stop_sequence_ends_the_text_before_it(client):
    message, _ = streamed(client, messages=user("x [[fake: tokens=10]]"), stop_sequences=["sit"])

    assert (message.content[0].text, message.stop_reason, message.stop_sequence) == (
        "lorem ipsum dolor ",
        "stop_sequence",
        "sit",
    )


def test_a_repeated_prefix_is_written_to_the_cache_then_read(client):
    system = [
        {
            "type": "text",
            "text": f"{uuid.uuid4()} " + "policy " * 2000,
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]

    first, _ = streamed(client, system=system, messages=user("first"))
    second, _ = streamed(client, system=system, messages=user("second question"))

    written = first.usage.cache_creation_input_tokens
    assert written > 3000 and first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == written
    assert (second.usage.cache_read_input_tokens, second.usage.cache_creation_input_tokens) == (written, 0)
    assert second.usage.input_tokens < 10


def test_images_and_documents_count_as_input(client):
    plain, _ = streamed(client, messages=user([{"type": "text", "text": "what is it?"}]))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    document = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}

    with_image, _ = streamed(client, messages=user([image, {"type": "text", "text": "what is it?"}]))
    with_document, _ = streamed(client, messages=user([document, {"type": "text", "text": "what is it?"}]))

    assert with_image.usage.input_tokens >= plain.usage.input_tokens + 90
    assert with_document.usage.input_tokens >= plain.usage.input_tokens + 900


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        ({"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}}, "does not match"),
        ({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "not base64!"}}, "base64"),
        ({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PNG}}, "PDF"),
        ({"type": "hologram"}, "messages.0.content.0"),
    ],
)
def test_a_bad_block_is_the_providers_400(client, block, fragment):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=user([block]))

    assert caught.value.type == "invalid_request_error" and fragment in caught.value.message
