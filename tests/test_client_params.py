"""The Python client and the CLI with the `params` form: `submit(params=...)`, the typed
Message and its blocks, `result.output`; `llmjobs submit --params FILE` (and `-`: stdin);
`llmjobs tail` showing thinking and tool input apart from the text."""

from __future__ import annotations

import json
import subprocess

from llmjobs import JobsClient
from llmjobs.types import TextBlock, ThinkingBlock, ToolUseBlock

from tests.support.cli import LLMJOBS, run_cli
from tests.support.fake_server import directive
from tests.support.keys import ALICE_KEY
from tests.test_client_cli import tail_of

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
INVOICE = {
    "type": "object",
    "properties": {"number": {"type": "string"}, "total": {"type": "number"}},
    "required": ["number", "total"],
    "additionalProperties": False,
}


def test_the_client_submits_params_and_reads_typed_blocks_and_the_output(start_api, start_worker):
    api = start_api()
    start_worker()
    client = JobsClient(api, api_key=ALICE_KEY)

    tool_params = {"tools": [WEATHER], "tool_choice": {"type": "any"}, "messages": [{"role": "user", "content": "?"}]}
    called = client.wait(client.submit(params=tool_params, metadata={"flow": "agent"}).id, timeout=60)
    thought = client.wait(
        client.submit(params={"messages": [{"role": "user", "content": "think " + directive(tokens=4)}],
                              "thinking": {"type": "enabled", "budget_tokens": 1024}}).id,
        timeout=60,
    )  # fmt: skip
    extracted = client.wait(
        client.submit(params={"messages": [{"role": "user", "content": "invoice 7, 12 EUR"}],
                              "output_config": {"format": {"type": "json_schema", "schema": INVOICE}}}).id,
        timeout=60,
    )  # fmt: skip

    assert called.result is not None and called.result.message is not None
    (use,) = called.result.message.tool_uses
    assert isinstance(use, ToolUseBlock) and use.name == "get_weather" and "city" in use.input
    assert called.metadata == {"flow": "agent"}
    assert thought.result is not None and thought.result.message is not None
    thinking, text = thought.result.message.content
    assert isinstance(thinking, ThinkingBlock) and thinking.signature
    assert isinstance(text, TextBlock) and text.text == thought.result.text
    assert (
        thought.result.usage.thinking_tokens
        and thought.result.usage.output_tokens > thought.result.usage.thinking_tokens
    )
    assert extracted.result is not None and set(extracted.result.output) == {"number", "total"}


def test_cli_submit_params_from_a_file_and_from_stdin(start_api, start_worker, tmp_path):
    api = start_api()
    start_worker()
    params = {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"},
              "messages": [{"role": "user", "content": "weather?"}]}  # fmt: skip
    path = tmp_path / "request.json"
    path.write_text(json.dumps(params))

    from_file = run_cli("submit", "--params", str(path), "--max-tokens", "300", "--wait", "--json", url=api)
    from_stdin = subprocess.run(
        [LLMJOBS, "submit", "--params", "-", "--wait", "--json"], input=json.dumps(params), capture_output=True,
        text=True, timeout=60, env={"LLMJOBS_URL": api, "LLMJOBS_API_KEY": ALICE_KEY, "PATH": ""},
    )  # fmt: skip

    for answer in (from_file, from_stdin):
        assert answer.returncode == 0, answer.stderr
        job = json.loads(answer.stdout)
        assert job["result"]["message"]["content"][0]["name"] == "get_weather"
    assert json.loads(from_file.stdout)["result"]["message"]["usage"]["output_tokens"] > 0
    both = run_cli("submit", "hi", "--params", str(path), url=api)
    assert both.returncode == 2 and "not both" in both.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}], "temperature": 0.3}))
    refused = run_cli("submit", "--params", str(bad), url=api)
    assert refused.returncode == 2 and "params.temperature" in refused.stderr


def test_tail_prints_thinking_and_tool_input_in_sections_of_their_own():
    result = {"text": "It is sunny.", "usage": {"input_tokens": 3, "output_tokens": 9}, "cost_usd": None}
    job = {"id": "j1", "status": "succeeded", "attempts": 1, "progress": {"output_tokens": 9}, "result": result}
    progress = [
        {"text": "", "attempt": 1, "output_tokens": 2,
         "deltas": [{"block": 0, "type": "thinking_delta", "thinking": "The user wants "},
                    {"block": 0, "type": "signature_delta", "signature": "sig"}]},
        {"text": "It is sunny.", "attempt": 1, "output_tokens": 5,
         "deltas": [{"block": 2, "type": "input_json_delta", "partial_json": '{"city": "Paris"}'}]},
    ]  # fmt: skip
    tailed = tail_of([*(("progress", data) for data in progress), ("succeeded", job)])

    assert tailed.returncode == 0, tailed.stderr
    assert tailed.stdout == (
        '[thinking, block 0]\nThe user wants \n[text]\nIt is sunny.\n[tool input, block 2]\n{"city": "Paris"}\n'
    ), repr(tailed.stdout)
