"""`params` jobs end to end (DESIGN §8): gunicorn, worker.py, Redis, the fake Anthropic server
and the real SDK as real processes. The request reaches the provider whole; the result keeps
every block; structured outputs are parsed and checked; cache tokens are priced and counted apart;
the SSE stream carries every delta with its block index and type."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests

from service.llm.pricing import PRICES_USD_PER_MTOK, cost_usd
from tests.support.event_stream import read_stream
from tests.support.jobs import get, post_job, submit, wait_until_finished
from tests.support.keys import ALICE
from tests.support.prometheus import scrape, value

MODEL = "claude-sonnet-5-5"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
    },
}
INVOICE = {
    "type": "object",
    "properties": {"number": {"type": "string"}, "total": {"type": "number"}, "paid": {"type": "boolean"}},
    "required": ["number", "total", "paid"],
    "additionalProperties": False,
}


def finished(api: str, body: dict) -> dict:
    job = wait_until_finished(api, submit(api, body)["id"])
    return job


def sent_bodies(fake: str) -> list[dict]:
    return [entry["body"] for entry in requests.get(f"{fake}/_fake/requests", timeout=5).json()]


def test_a_forced_tool_call_comes_back_as_a_tool_use_block(start_api, start_worker, fake_anthropic):
    api = start_api()
    start_worker()
    marker = f"weather in Paris? {uuid.uuid4()}"
    params = {
        "model": MODEL,
        "max_tokens": 500,
        "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [{"role": "user", "content": marker}],
    }

    job = finished(api, {"params": params, "metadata": {"flow": "agent"}})

    assert job["status"] == "succeeded", job
    message = job["result"]["message"]
    (block,) = message["content"]
    assert (block["type"], block["name"], job["result"]["stop_reason"]) == ("tool_use", "get_weather", "tool_use")
    assert set(block["input"]) == {"city", "unit"} and block["input"]["unit"] == "c"
    assert job["result"]["text"] == "" and job["result"]["output"] is None
    (sent,) = [body for body in sent_bodies(fake_anthropic) if body["messages"][0]["content"] == marker]
    assert sent == {**params, "stream": True}  # the request reached the provider whole


def test_structured_output_is_parsed_into_result_output(start_api, start_worker):
    api = start_api()
    start_worker()
    params = {
        "messages": [{"role": "user", "content": "Extract the invoice: no. 42, 99.5 EUR, paid."}],
        "output_config": {"format": {"type": "json_schema", "schema": INVOICE}},
    }

    job = finished(api, {"params": params})

    assert job["status"] == "succeeded", job
    output = job["result"]["output"]
    assert set(output) == {"number", "total", "paid"} and json.loads(job["result"]["text"]) == output


def test_a_reply_that_does_not_match_the_schema_fails_as_invalid_output(start_api, start_worker):
    api = start_api()
    start_worker()
    params = {
        "messages": [{"role": "user", "content": "Extract it [[fake: broken_json=1]]"}],
        "output_config": {"format": {"type": "json_schema", "schema": INVOICE}},
    }

    job = finished(api, {"params": params})

    assert job["status"] == "failed"
    assert (job["error"]["type"], job["error"]["retryable"]) == ("invalid_output", False)
    assert "not JSON" in job["error"]["message"]


def test_thinking_and_its_signature_are_kept_and_priced_once(start_api, start_worker):
    api = start_api()
    start_worker()
    params = {
        "messages": [{"role": "user", "content": "Think first [[fake: tokens=6]]"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "stop_sequences": ["NEVER"],
    }

    job = finished(api, {"params": params})

    assert job["status"] == "succeeded", job
    thinking, text = job["result"]["message"]["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] and thinking["signature"]
    assert len(text["text"].split()) == 6 == len(job["result"]["text"].split())
    usage = job["result"]["usage"]
    thought = usage["output_tokens_details"]["thinking_tokens"]
    assert usage["output_tokens"] == 6 + thought
    price = PRICES_USD_PER_MTOK[MODEL]
    assert job["result"]["cost_usd"] == pytest.approx(
        (usage["input_tokens"] * price.input + usage["output_tokens"] * price.output) / 1e6
    )


def test_a_cached_system_prompt_is_written_once_then_read_and_priced_apart(start_api, start_worker):
    api = start_api()
    start_worker()
    system = [
        {"type": "text", "text": f"{uuid.uuid4()} " + "Our policy. " * 1500, "cache_control": {"type": "ephemeral"}}
    ]

    def ask(question: str) -> dict:
        return finished(api, {"params": {"system": system, "messages": [{"role": "user", "content": question}]}})

    first, second = ask("first question"), ask("second question")

    written = first["result"]["usage"]["cache_creation_input_tokens"]
    assert written > 4000 and first["result"]["usage"]["cache_creation"]["ephemeral_5m_input_tokens"] == written
    assert second["result"]["usage"]["cache_read_input_tokens"] == written
    assert second["result"]["usage"]["cache_creation_input_tokens"] == 0
    price = PRICES_USD_PER_MTOK[MODEL]
    assert first["result"]["cost_usd"] == pytest.approx(cost_usd(MODEL, first["result"]["usage"]))
    assert second["result"]["cost_usd"] < first["result"]["cost_usd"] * price.cache_read / price.cache_write_5m + 0.001
    usage = requests.get(f"{api}/v1/usage", params={"group_by": "model"}, headers=ALICE, timeout=10).json()
    (row,) = [row for row in usage["data"] if row["model"] == MODEL]
    assert row["cache_creation_input_tokens"] >= written and row["cache_read_input_tokens"] >= written
    samples = scrape(api)
    assert value(samples, "llmjobs_llm_tokens_total", model=MODEL, type="cache_write") >= written
    assert value(samples, "llmjobs_llm_tokens_total", model=MODEL, type="cache_read") >= written


def test_an_image_is_sent_and_counted_as_input(start_api, start_worker):
    api = start_api()
    start_worker()
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64_000)).decode()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}

    job = finished(
        api, {"params": {"messages": [{"role": "user", "content": [image, {"type": "text", "text": "What?"}]}]}}
    )

    assert job["status"] == "succeeded", job
    assert job["result"]["usage"]["input_tokens"] >= 1000


def test_a_bad_image_fails_with_the_providers_400(start_api, start_worker):
    api = start_api()
    start_worker()
    not_png = base64.b64encode(b"GIF89a" + bytes(100)).decode()
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": not_png}}

    job = finished(api, {"params": {"messages": [{"role": "user", "content": [image]}]}})

    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["type"] == "invalid_request_error" and "does not match" in job["error"]["message"]


def test_the_event_stream_carries_tool_input_and_thinking_deltas_with_their_block(start_api, start_worker):
    api = start_api()
    start_worker()
    params = {
        "messages": [{"role": "user", "content": "weather [[fake: tool_use=1 chunk_delay_ms=5]]"}],
        "tools": [WEATHER],
    }
    job = submit(api, {"params": params})

    events = read_stream(api, job["id"])

    deltas = [delta for event in events if event.event == "progress" for delta in event.data.get("deltas", [])]
    assert deltas and {(d["block"], d["type"]) for d in deltas} == {(0, "input_json_delta")}
    streamed_input = json.loads("".join(d["partial_json"] for d in deltas))
    done = get(api, job["id"])
    assert streamed_input == done["result"]["message"]["content"][0]["input"]
    assert events[-1].event == "succeeded"


def test_citations_of_a_document_are_kept_in_the_result_and_streamed_with_their_block(start_api, start_worker):
    api = start_api()
    start_worker()
    report = "Revenue grew by 12 % in the third quarter, led by the new region."
    document = {"type": "document", "title": "Q3 report", "citations": {"enabled": True},
                "source": {"type": "text", "media_type": "text/plain", "data": report}}  # fmt: skip
    question = {"type": "text", "text": "How did revenue do? [[fake: tokens=6 chunk_delay_ms=5]]"}
    job = submit(api, {"params": {"messages": [{"role": "user", "content": [document, question]}]}})

    events = read_stream(api, job["id"])

    cited = {"type": "char_location", "cited_text": report[:40], "document_index": 0, "document_title": "Q3 report",
             "start_char_index": 0, "end_char_index": 40}  # fmt: skip
    done = get(api, job["id"])
    assert done["status"] == "succeeded", done
    [text] = done["result"]["message"]["content"]
    assert text["type"] == "text" and text["citations"] == [cited] and text["text"] == done["result"]["text"]
    deltas = [delta for event in events if event.event == "progress" for delta in event.data.get("deltas", [])]
    assert [d for d in deltas if d["type"] == "citations_delta"] == [
        {"block": 0, "type": "citations_delta", "citation": cited}
    ]


def test_a_job_with_betas_goes_to_the_beta_endpoint(start_api, start_worker, fake_anthropic):
    api = start_api()
    start_worker()
    marker = f"beta {uuid.uuid4()}"
    params = {"messages": [{"role": "user", "content": marker}], "betas": ["context-management-2025-06-27"]}

    job = finished(api, {"params": params})

    assert job["status"] == "succeeded", job
    entries = requests.get(f"{fake_anthropic}/_fake/requests", timeout=5).json()
    (entry,) = [e for e in entries if e["body"]["messages"][0]["content"] == marker]
    assert "anthropic-beta" in entry["headers"] and "betas" not in entry["body"]


def test_a_refused_params_job_is_never_sent(start_api, fake_anthropic):
    api = start_api()
    marker = f"refused {uuid.uuid4()}"
    bad = {"messages": [{"role": "user", "content": marker}], "temperature": 0.5}

    response = post_job(api, {"params": bad})

    assert response.status_code == 422 and "params.temperature" in response.json()["errors"]["json"]
    assert all(body["messages"][0].get("content") != marker for body in sent_bodies(fake_anthropic))
