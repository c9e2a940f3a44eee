"""The analyses a document job runs: built-in ones and a client's own, their prompts
(one call per chunk, then one that combines the chunk answers) and the checks of a JSON
answer."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TEXT, JSON = "text", "json"
SENTIMENT_LABELS = ("positive", "negative", "neutral", "mixed")
SYSTEM = "You analyse documents carefully and answer exactly in the format asked for."


class InvalidOutput(ValueError):
    """A JSON answer that is not the JSON asked for; the message goes back to the model."""


def _strings(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise InvalidOutput("expected a JSON array of non-empty strings")
    return value


def _sentiment(value: Any) -> Any:
    if not isinstance(value, dict) or set(value) != {"label", "score", "rationale"}:
        raise InvalidOutput('expected a JSON object with exactly the keys "label", "score" and "rationale"')
    if value["label"] not in SENTIMENT_LABELS:
        raise InvalidOutput(f'"label" must be one of {", ".join(SENTIMENT_LABELS)}')
    score = value["score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not -1 <= score <= 1:
        raise InvalidOutput('"score" must be a number from -1 to 1')
    if not isinstance(value["rationale"], str):
        raise InvalidOutput('"rationale" must be a string')
    return value


# Structured outputs take an object at the root: a list answer is asked for as {"items": [...]}.
LIST_FIELD = "items"


def _object_of_strings() -> dict[str, Any]:
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        "type": "object",
        "properties": {LIST_FIELD: strings},
        "required": [LIST_FIELD],
        "additionalProperties": False,
    }


SENTIMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": list(SENTIMENT_LABELS)},
        "score": {"type": "number", "minimum": -1, "maximum": 1},
        "rationale": {"type": "string"},
    },
    "required": ["label", "score", "rationale"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Analysis:
    name: str
    prompt: str
    output: str = TEXT  # "text" or "json"
    shape: str | None = None  # an example of the JSON asked for, shown to the model
    check: Callable[[Any], Any] | None = None  # built-ins check their JSON beyond parsing
    schema: dict[str, Any] | None = None  # asked for as structured outputs (output_config.format)

    def as_dict(self) -> dict[str, Any]:
        """As the job stores it (a client's own analysis: name, prompt, output)."""
        return {"name": self.name, "prompt": self.prompt, "output": self.output}


BUILT_IN = {
    analysis.name: analysis
    for analysis in (
        Analysis("summary", "Summarise the document in one to three paragraphs of plain prose."),
        Analysis(
            "key_points", "List the document's key points, most important first, each one sentence.", JSON,
            shape='["first key point", "second key point"]', check=_strings, schema=_object_of_strings(),
        ),
        Analysis(
            "sentiment", "Judge the overall sentiment (tone) of the document.", JSON,
            shape='{"label": "neutral", "score": 0.0, "rationale": "one sentence why"}', check=_sentiment,
            schema=SENTIMENT_SCHEMA,
        ),
        Analysis(
            "topics", "List the main topics the document covers, as short noun phrases.", JSON,
            shape='["first topic", "second topic"]', check=_strings, schema=_object_of_strings(),
        ),
    )
}  # fmt: skip
DEFAULT_ANALYSES = ("summary", "key_points", "sentiment", "topics")


def analysis_of(stored: dict[str, Any]) -> Analysis:
    """The analysis a job stored: a built-in by its name alone, or a client's own."""
    if "prompt" not in stored:
        return BUILT_IN[stored["name"]]
    return Analysis(stored["name"], stored["prompt"], stored.get("output", TEXT))


def _format(analysis: Analysis) -> str:
    if analysis.output == TEXT:
        return ""
    if analysis.shape:
        return f"\n\nReply with JSON only, shaped like: {analysis.shape}"
    return "\n\nReply with JSON only."


# The document goes first, alone in its block, marked for the prompt cache: every analysis
# of it sends the same prefix (system prompt, then this block), so the second and later
# analyses read it from the provider's cache at a tenth of the input price or less.
CACHED = {"type": "ephemeral"}


def document_prompt(analysis: Analysis, text: str, part: int = 1, parts: int = 1) -> list[dict[str, Any]]:
    """The prompt for the whole document, or for part `part` of `parts` of it: the text
    (a cached prefix), then the question."""
    where = "the document" if parts == 1 else f"part {part} of {parts} of a document (answer for this part only)"
    return [
        {"type": "text", "text": f"<document>\n{text}\n</document>", "cache_control": CACHED},
        {"type": "text", "text": f"This is {where}. {analysis.prompt}{_format(analysis)}"},
    ]


def native_prompt(analysis: Analysis) -> str:
    """The prompt beside a PDF given to the model as a document block."""
    return f"{analysis.prompt}{_format(analysis)}"


def combine_prompt(analysis: Analysis, answers: list[str]) -> str:
    """The prompt that turns the answers for each part into one for the whole document."""
    parts = "\n".join(f'<part number="{i}">\n{answer}\n</part>' for i, answer in enumerate(answers, 1))
    return (
        f"A document was analysed in {len(answers)} parts; the answers for each part follow.\n\n{parts}\n\n"
        f"Combine them into one answer for the whole document, as asked: {analysis.prompt}{_format(analysis)}"
    )


def repair_prompt(analysis: Analysis, error: str) -> str:
    """The second ask of a JSON step whose reply was not the JSON asked for: what was
    wrong, and the request again."""
    return f"That reply is not the JSON asked for: {error}. Again: {analysis.prompt}{_format(analysis)}"


_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.DOTALL)


def parse_output(analysis: Analysis, text: str, structured: bool = False) -> Any:
    """A JSON step's parsed, checked answer; raises InvalidOutput saying what is wrong.
    `structured`: asked for with the analysis's schema (a list comes wrapped in an object)."""
    stripped = text.strip()
    if fenced := _FENCE.match(stripped):
        stripped = fenced.group(1)
    try:
        value = json.loads(stripped)
    except ValueError as exc:
        raise InvalidOutput(f"not valid JSON ({exc})") from None
    if structured and analysis.schema is not None and LIST_FIELD in analysis.schema["properties"]:
        value = value.get(LIST_FIELD) if isinstance(value, dict) else value
    return analysis.check(value) if analysis.check else value
