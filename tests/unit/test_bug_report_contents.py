"""What a bug report may carry: sentry-sdk's event passes through `_without_messages` last."""

from service.bug_reports import _without_messages

PROMPT = "the-secret-launch-code-4711"


def test_an_exceptions_message_never_leaves_but_its_type_and_stack_do():
    frames = [{"filename": "service/tasks/llm_job.py", "function": "run", "lineno": 12}]
    event = {
        "exception": {
            "values": [
                {"type": "KeyError", "value": repr(PROMPT), "stacktrace": {"frames": frames}},
                {"type": "ValueError", "value": f"bad reply: {PROMPT}", "stacktrace": {"frames": frames}},
                {"type": "StopIteration", "value": ""},
            ]
        },
        "tags": {"job_id": "j1"},
    }

    sent = _without_messages(event, {})

    assert PROMPT not in repr(sent)
    values = sent["exception"]["values"]
    assert [v["type"] for v in values] == ["KeyError", "ValueError", "StopIteration"]
    assert values[0]["value"] == f"(a message of {len(repr(PROMPT))} characters, not sent)"
    assert values[1]["stacktrace"]["frames"] == frames and sent["tags"] == {"job_id": "j1"}
    assert values[2]["value"] == ""
