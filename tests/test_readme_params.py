"""The `params` examples of docs/params.md ("Every Messages request: the params form"), each
submitted as written to the running stack (gunicorn, a worker, the fake Anthropic server, the
real SDK), each checked for what the page says it gives."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from tests.support.docs_pages import page
from tests.support.jobs import submit, wait_until_finished

EXAMPLE = re.compile(r"<!-- example: (?P<name>[\w-]+) -->\n```json\n(?P<body>.*?)\n```", re.DOTALL)


def page_examples() -> dict[str, str]:
    return {match["name"]: match["body"] for match in EXAMPLE.finditer(page("params.md"))}


def body_of(name: str, **placeholders: str) -> dict[str, Any]:
    text = page_examples()[name]
    for placeholder, value in placeholders.items():
        text = text.replace(placeholder, value)
    return json.loads(text)


def test_the_page_has_every_example():
    assert set(page_examples()) == {
        "tool-call",
        "structured-extraction",
        "image",
        "pdf",
        "cached-system-prompt",
        "batch-tier",
    }


@pytest.fixture
def api(start_api, start_worker) -> str:
    start_worker()
    return start_api()


def done(api: str, body: dict[str, Any]) -> dict[str, Any]:
    job = wait_until_finished(api, submit(api, body)["id"])
    assert job["status"] == "succeeded", job
    return job


def test_a_tool_call(api):
    job = done(api, body_of("tool-call"))

    (block,) = job["result"]["message"]["content"]
    assert (block["type"], block["name"], job["result"]["stop_reason"]) == ("tool_use", "get_weather", "tool_use")
    assert isinstance(block["input"]["city"], str)


def test_a_structured_extraction(api):
    job = done(api, body_of("structured-extraction"))

    assert set(job["result"]["output"]) == {"number", "vendor", "total", "currency"}


@pytest.mark.parametrize("name", ["image", "pdf"])
def test_an_image_and_a_pdf(api, name):
    body = body_of(name)
    question = body["params"]["messages"][0]["content"][1]["text"]

    job = done(api, body)

    # the image or the document counted as input, beside the question
    assert job["result"]["text"] and job["result"]["usage"]["input_tokens"] > len(question) // 4


def test_a_long_system_prompt_cached_across_jobs(api):
    policy = f"{uuid.uuid4()} " + "Expenses need a receipt. " * 400

    first = done(api, body_of("cached-system-prompt", LONG_POLICY=policy))
    second = done(api, body_of("cached-system-prompt", LONG_POLICY=policy))

    written = first["result"]["usage"]["cache_creation_input_tokens"]
    assert written > 2000 and first["result"]["usage"]["cache_creation"]["ephemeral_1h_input_tokens"] == written
    assert second["result"]["usage"]["cache_read_input_tokens"] == written
    assert second["result"]["cost_usd"] < first["result"]["cost_usd"]
