"""The `params` form at submit (DESIGN §8): any Messages request the pinned SDK types, checked
against the SDK's own types before the 202, every problem named by its path; nothing stored
or queued for a refused one. In-process API on a real Redis."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from service.api.schemas import TEMPERATURE_REFUSED
from tests.support.jobs import post_job_in_app
from tests.support.keys import ALICE
from tests.test_api_contract import assert_error, assert_no_job_created, fetch_rq_job

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
    {
        "name": "lookup",
        "description": "Look a word up.",
        "input_schema": {"type": "object", "additionalProperties": True},
    },
]
PARAMS: dict[str, Any] = {
    "model": "claude-sonnet-5-5",
    "max_tokens": 300,
    "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    "tools": TOOLS,
    "tool_choice": {"type": "tool", "name": "get_weather"},
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat"}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And the weather in Paris?"},
    ],
    "stop_sequences": ["\n\nHuman:"],
    "metadata": {"user_id": "u-1"},
    "output_config": {"effort": "low"},
}


def with_change(path: str, value: Any, params: dict[str, Any] = PARAMS) -> dict[str, Any]:
    """A copy of `params` with the value at dotted `path` replaced (`...` deletes it)."""
    changed = copy.deepcopy(params)
    *parents, last = path.split(".")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return changed


def test_a_whole_request_is_stored_as_sent_with_the_job_options_beside_it(client, redis_conn):
    response = post_job_in_app(
        client, {"params": PARAMS, "priority": "high", "metadata": {"team": "search"}, "timeout_s": 60}
    )

    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.get_json()
    assert (job["model"], job["priority"], job["metadata"]) == ("claude-sonnet-5-5", "high", {"team": "search"})
    rq_job = fetch_rq_job(redis_conn, job["id"])
    assert rq_job.kwargs == {"request": PARAMS}  # as the Message Batches API would take it, too


def test_model_and_max_tokens_are_defaulted_and_a_thinking_budget_added(client, redis_conn):
    params = {"messages": [{"role": "user", "content": "hi"}], "thinking": {"type": "enabled", "budget_tokens": 2000}}

    job = post_job_in_app(client, {"params": params}).get_json()

    request = fetch_rq_job(redis_conn, job["id"]).kwargs["request"]
    assert request["model"] == job["model"] == "claude-sonnet-5-5"  # LLM_DEFAULT_MODEL of the tests
    assert request["max_tokens"] == 1024 + 2000


def test_betas_go_beside_the_request_for_the_beta_endpoint(client, redis_conn):
    params = {**PARAMS, "betas": ["context-management-2025-06-27"]}

    job = post_job_in_app(client, {"params": params}).get_json()

    assert fetch_rq_job(redis_conn, job["id"]).kwargs == {"request": PARAMS, "betas": params["betas"]}


def test_the_simple_forms_become_the_same_request(client, redis_conn):
    job = post_job_in_app(client, {"prompt": "hi", "system": "be brief", "max_tokens": 20}).get_json()

    assert fetch_rq_job(redis_conn, job["id"]).kwargs == {
        "request": {
            "model": "claude-sonnet-5-5",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}],
            "system": "be brief",
        }
    }


REFUSED = [
    pytest.param(
        with_change("messages.0.content.1.source.media_type", "image/bmp"),
        "params.messages.0.content.1.source.media_type",
        id="image-media-type",
    ),
    pytest.param(
        with_change("messages.0.content.1.type", "picture"), "params.messages.0.content.1.type", id="block-type"
    ),
    pytest.param(
        with_change("messages.0.content.0.colour", "blue"), "params.messages.0.content.0.colour", id="unknown-block-key"
    ),
    pytest.param(with_change("messages.0.content.0.text", ...), "params.messages.0.content.0.text", id="missing-text"),
    pytest.param(with_change("messages", "hello"), "params.messages", id="messages-a-string"),  # pydantic's lazy trap
    pytest.param(with_change("messages.1.role", "bot"), "params.messages.1.role", id="role"),
    pytest.param(with_change("temperature", 0.5), "params.temperature", id="temperature-unknown-in-2.11"),
    pytest.param(with_change("top_k", 5), "params.top_k", id="top_k"),
    pytest.param(with_change("stream", True), "params.stream", id="stream-true"),
    pytest.param(with_change("stream", False), "params.stream", id="stream-even-false"),
    pytest.param(
        with_change("tool_choice", {"type": "tool"}), "params.tool_choice.name", id="tool-choice-without-name"
    ),
    pytest.param(
        with_change("thinking", {"type": "enabled", "budget_tokens": "lots"}),
        "params.thinking.budget_tokens",
        id="thinking-budget-not-int",
    ),
    pytest.param(with_change("max_tokens", 64001), "params.max_tokens", id="max-tokens-over-the-cap"),
    pytest.param(with_change("model", "bad model!"), "params.model", id="model-name"),
    pytest.param(with_change("messages", [{"role": "user", "content": "x"}] * 201), "params.messages", id="201"),
    pytest.param("not an object", "params", id="params-not-an-object"),
]


@pytest.mark.parametrize(("params", "path"), REFUSED)
def test_a_bad_request_is_a_422_naming_the_deepest_path_and_nothing_is_stored(client, redis_conn, params, path):
    body = assert_error(post_job_in_app(client, {"params": params}), 422)

    assert path in body["errors"]["json"], body
    assert path in body["message"]
    assert_no_job_created(redis_conn)


def test_the_422_names_the_allowed_values(client, redis_conn):
    body = assert_error(
        post_job_in_app(client, {"params": with_change("messages.0.content.1.source.media_type", "image/bmp")}), 422
    )

    assert body["errors"]["json"] == {
        "params.messages.0.content.1.source.media_type": [
            "must be one of: image/gif, image/jpeg, image/png, image/webp"
        ]
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"params": PARAMS, "prompt": "hi"}, "_schema", id="params-and-prompt"),
        pytest.param({"params": PARAMS, "messages": [{"role": "user", "content": "x"}]}, "_schema", id="and-messages"),
        pytest.param({"params": PARAMS, "model": "claude-haiku-4-5"}, "model", id="model-beside-params"),
        pytest.param({"params": PARAMS, "system": "x"}, "system", id="system-beside-params"),
        pytest.param({"params": PARAMS, "max_tokens": 5}, "max_tokens", id="max_tokens-beside-params"),
        pytest.param({"params": {**PARAMS, "priority": "high"}}, "params.priority", id="job-option-inside-params"),
    ],
)
def test_the_forms_do_not_mix(client, redis_conn, body, field):
    assert_error(post_job_in_app(client, body), 422, field=field)
    assert_no_job_created(redis_conn)


def test_temperature_of_the_simple_form_is_refused_saying_why(client, redis_conn):
    body = assert_error(post_job_in_app(client, {"prompt": "hi", "temperature": 0.2}), 422, field="temperature")

    assert body["errors"]["json"]["temperature"] == [TEMPERATURE_REFUSED]
    assert "2026-10-21" in TEMPERATURE_REFUSED


def test_a_batch_names_the_job_and_the_path(client, redis_conn):
    bad = with_change("messages.0.content.1.source.media_type", "image/bmp")

    response = client.post("/v1/batches", json={"jobs": [{"params": PARAMS}, {"params": bad}]}, headers=ALICE)

    body = assert_error(response, 422)
    assert body["errors"]["json"]["jobs"] == {"1": {"params.messages.0.content.1.source.media_type": [
        "must be one of: image/gif, image/jpeg, image/png, image/webp"]}}  # fmt: skip
    assert_no_job_created(redis_conn)


def test_a_batch_of_params_jobs_is_queued(client, redis_conn):
    response = client.post("/v1/batches", json={"jobs": [{"params": PARAMS}, {"prompt": "hi"}]}, headers=ALICE)

    assert response.status_code == 202, response.get_data(as_text=True)
    first, second = (fetch_rq_job(redis_conn, job_id) for job_id in response.get_json()["job_ids"])
    assert first.kwargs == {"request": PARAMS}
    assert second.kwargs["request"]["messages"] == [{"role": "user", "content": "hi"}]


def test_the_openapi_document_shows_the_params_schema(client):
    document = client.get("/openapi.json").get_json()

    job_request = document["components"]["schemas"]["JobRequest"]
    assert "#/components/schemas/MessagesRequest" in job_request["properties"]["params"]["description"]
    params = document["components"]["schemas"]["MessagesRequest"]
    assert {"messages", "tools", "tool_choice", "thinking", "output_config", "system"} <= set(params["properties"])
    assert "stream" not in params["properties"] and params["additionalProperties"] is False
    image = document["components"]["schemas"]["MessagesImageBlockParam"]
    assert image["additionalProperties"] is False
    assert image["properties"]["type"] == {"enum": ["image"], "type": "string"}
    assert "temperature" not in job_request["properties"]
