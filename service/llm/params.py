"""The `params` form: a Messages API request, checked against the pinned SDK's own types.

The schema is made from the SDK's TypedDicts (`MessageCreateParamsNonStreaming`, or the
beta one for a request naming `betas`) by pydantic, and kept in `request_schemas/` (made by
`python -m service.llm.params`; tests/unit/test_request_schemas.py fails when the installed
SDK would make another): the API loads it in milliseconds, without importing the SDK
(seconds). Upgrading the SDK brings its new parameters and blocks without code: run the
command, commit the files. pydantic's own validator is not used:
it validates `Iterable` fields lazily (a bad block passes until iterated) and drops unknown
keys of a TypedDict silently. Its JSON schema, with `additionalProperties: false` added to
every object that lists its properties (never to free-form ones such as a tool's
`input_schema`), catches both; jsonschema-rs checks a request against it in tens of
microseconds (bench/RESULTS.md). A refusal names the deepest failing path: within a union
of blocks, the branches whose `type` (or `role`) does not match are set aside first.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
import pydantic

Where = tuple[str | int, ...]
# Keys whose value tells the branches of a union apart (a block's type, a message's role).
DISCRIMINATORS = ("type", "role")
MESSAGE_LIMIT = 300  # a problem's message quotes at most this much of what was sent


@dataclass(frozen=True)
class Problem:
    """One reason a request is refused: where (a path inside it) and what is wrong."""

    path: Where
    message: str

    def where(self, root: str = "params") -> str:
        return ".".join([root, *(str(part) for part in self.path)])


class RequestSchema:
    """One SDK request type as a compiled JSON schema."""

    def __init__(self, document: dict[str, Any]):
        self.document = document
        self._validator = jsonschema_rs.Draft202012Validator(document)

    def problems(self, params: Any) -> list[Problem]:
        """Why `params` is not a request of this type (empty: it is one)."""
        if self._validator.is_valid(params):
            return []
        found = {problem.path: problem for error in self._validator.iter_errors(params) for problem in _deepest(error)}
        return sorted(found.values(), key=lambda problem: [str(part) for part in problem.path])


SCHEMA_DIR = Path(__file__).with_name("request_schemas")
# File name -> the SDK module whose MessageCreateParamsNonStreaming it is made from.
SOURCES = {
    "messages.json": "anthropic.types.message_create_params",
    "beta_messages.json": "anthropic.types.beta.message_create_params",
}


@functools.cache
def messages_schema() -> RequestSchema:
    return RequestSchema(json.loads((SCHEMA_DIR / "messages.json").read_text()))


@functools.cache
def beta_messages_schema() -> RequestSchema:
    return RequestSchema(json.loads((SCHEMA_DIR / "beta_messages.json").read_text()))


def generated_schema(module_name: str) -> dict[str, Any]:
    """The request schema the installed SDK's types make (imports the SDK: seconds)."""
    import anthropic

    typed_params = importlib.import_module(module_name).MessageCreateParamsNonStreaming
    schema = pydantic.TypeAdapter(typed_params).json_schema()
    _close_objects(schema)
    return {"$comment": f"made by `python -m service.llm.params` from anthropic=={anthropic.__version__}", **schema}


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


def schema_for(params: Mapping[str, Any]) -> RequestSchema:
    """A request naming `betas` goes to the beta Messages endpoint, and is checked against its types."""
    return beta_messages_schema() if "betas" in params else messages_schema()


# Keywords whose value maps names to schemas (not a schema itself).
SCHEMA_MAPS = ("properties", "$defs")


def _close_objects(schema: Any) -> None:
    """`additionalProperties: false` on every object schema that lists its properties:
    TypedDicts cannot forbid extras, and an unknown key must be refused, not dropped.
    Free-form objects (a tool's `input_schema`, a JSON schema) list none and stay open."""
    if isinstance(schema, list):
        for item in schema:
            _close_objects(item)
        return
    if not isinstance(schema, dict):
        return
    if "properties" in schema:  # also the SDK's response models, which allow extras
        schema["additionalProperties"] = False
    if isinstance(schema.get("enum"), list) and all(isinstance(value, str) for value in schema["enum"]):
        # pydantic's order of a Literal's values depends on what the process built before: sorted, the file is stable
        schema["enum"] = sorted(schema["enum"])
    for keyword, value in schema.items():
        if keyword in SCHEMA_MAPS and isinstance(value, dict):
            for sub in value.values():
                _close_objects(sub)
        elif isinstance(value, dict | list):
            _close_objects(value)


def _deepest(error: Any) -> list[Problem]:
    """The problems behind one validation error: for a union, those of its branches that
    reach deepest into the request, among the branches whose discriminator matched."""
    kind = error.kind.name
    path = tuple(error.instance_path)
    if kind not in ("anyOf", "oneOf", "oneOfNotValid"):
        return list(_problems(error))
    branches = [list(branch) for branch in error.kind.context]
    matching = [branch for branch in branches if not any(_misses_discriminator(e, path) for e in branch)]
    if not matching:
        return [_no_branch_matches(path, branches) or Problem(path, "matches none of the allowed shapes")]
    candidates = [problem for branch in matching for e in branch for problem in _deepest(e)]
    depth = max(len(problem.path) for problem in candidates)
    return [problem for problem in candidates if len(problem.path) == depth]


def _misses_discriminator(error: Any, parent: Where) -> bool:
    where = tuple(error.instance_path)
    return len(where) == len(parent) + 1 and where[:-1] == parent and where[-1] in DISCRIMINATORS


def _no_branch_matches(path: Where, branches: list[list[Any]]) -> Problem | None:
    """Every branch refused the discriminator: say which values it may take."""
    expected: dict[str, None] = {}
    key: str | int | None = None
    for branch in branches:
        for error in branch:
            where = tuple(error.instance_path)
            if error.kind.name == "const" and _misses_discriminator(error, path):
                key = where[-1]
                expected[str(error.kind.as_dict()["expected_value"])] = None
    if key is None:
        return None
    return Problem((*path, key), f"must be one of: {', '.join(expected)}")


def _problems(error: Any) -> Iterator[Problem]:
    path = tuple(error.instance_path)
    kind, details = error.kind.name, error.kind.as_dict()
    if kind == "additionalProperties":
        for name in details["unexpected"]:
            yield Problem((*path, name), "unknown field: not part of the Messages API request the service speaks")
    elif kind == "required":
        yield Problem((*path, details["property"]), "missing required field")
    elif kind == "enum":
        yield Problem(path, "must be one of: " + ", ".join(map(str, details["options"])))
    elif kind == "const":
        yield Problem(path, f"must be {details['expected_value']!r}")
    elif kind == "type":
        yield Problem(path, "must be of type " + " or ".join(map(str, details["types"])))
    else:
        message = error.message
        yield Problem(path, message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT] + "...")


def openapi_schema(schema: RequestSchema, prefix: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The request schema in OpenAPI 3.0's dialect: the top object, and its definitions as
    named components (`prefix` + the SDK's name), references rewritten to them, `const` as a
    one-value `enum` and a `null` branch of a union as `nullable`."""
    document = copy.deepcopy(schema.document)
    definitions = document.pop("$defs", {})
    top = _openapi_node(document, prefix)
    return top, {f"{prefix}{name}": _openapi_node(value, prefix) for name, value in definitions.items()}


def _openapi_node(node: Any, prefix: str) -> Any:
    if isinstance(node, list):
        return [_openapi_node(value, prefix) for value in node]
    if not isinstance(node, dict):
        return node
    if isinstance(ref := node.get("$ref"), str):
        return {"$ref": f"#/components/schemas/{prefix}{ref.removeprefix('#/$defs/')}"}
    converted = {key: _openapi_node(value, prefix) for key, value in node.items() if key not in ("const", "title")}
    if "const" in node:
        converted["enum"] = [node["const"]]
    if "anyOf" in converted and {"type": "null"} in converted["anyOf"]:
        converted["anyOf"] = [branch for branch in converted["anyOf"] if branch != {"type": "null"}]
        converted["nullable"] = True
    return converted


if __name__ == "__main__":
    for name, module in SOURCES.items():
        (SCHEMA_DIR / name).write_text(schema_text(generated_schema(module)))
        print(f"wrote {SCHEMA_DIR / name} from {module}")
