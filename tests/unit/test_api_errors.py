"""service/api/errors.summarize: the one-line message of a validation error."""

from __future__ import annotations

from service.api.errors import summarize


def test_a_nested_field_is_named_by_its_path():
    assert summarize({"json": {"max_tokens": ["Not a valid integer."]}}) == "json.max_tokens: Not a valid integer."


def test_list_items_and_integer_keys_are_walked():
    errors = {"json": {"jobs": {0: {"prompt": ["Missing data for required field."]}}}}
    assert summarize(errors) == "json.jobs.0.prompt: Missing data for required field."
    assert summarize({"json": ["Invalid input type.", "Second."]}) == "json: Invalid input type.; json: Second."


def test_at_most_three_are_spelled_out_and_the_rest_counted():
    errors = {"json": {name: [f"bad {name}"] for name in "abcde"}}
    assert summarize(errors) == "json.a: bad a; json.b: bad b; json.c: bad c (+2 more)"
    assert summarize(errors, limit=5) == "json.a: bad a; json.b: bad b; json.c: bad c; json.d: bad d; json.e: bad e"
    assert summarize(errors, limit=1) == "json.a: bad a (+4 more)"


def test_exactly_the_limit_says_no_more():
    errors = {"query": {"a": ["x"], "b": ["y"], "c": ["z"]}}
    assert summarize(errors) == "query.a: x; query.b: y; query.c: z"


def test_a_message_with_no_field_stands_alone():
    assert summarize(["Unknown field."]) == "Unknown field."
    assert summarize({"_schema": ["Invalid input."]}) == "_schema: Invalid input."


def test_nothing_to_summarize_is_an_empty_message():
    assert summarize({}) == ""
    assert summarize({"json": {}}) == ""
