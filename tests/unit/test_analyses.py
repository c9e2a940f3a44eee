"""service/documents/analyses.py: a JSON analysis's answer is parsed and checked."""

from __future__ import annotations

import pytest

from service.documents.analyses import BUILT_IN, InvalidOutput, parse_output


def test_json_answers_are_checked() -> None:
    assert parse_output(BUILT_IN["topics"], '```json\n["a", "b"]\n```') == ["a", "b"]
    sentiment = '{"label": "mixed", "score": -0.2, "rationale": "why"}'
    assert parse_output(BUILT_IN["sentiment"], sentiment)["label"] == "mixed"
    with pytest.raises(InvalidOutput, match="not valid JSON"):
        parse_output(BUILT_IN["topics"], '["a", "b"')
    with pytest.raises(InvalidOutput, match="label"):
        parse_output(BUILT_IN["sentiment"], '{"label": "happy", "score": 0, "rationale": ""}')
