"""service/api/json_body.parse_json_body: strict JSON, and a 400's reason for everything else.
(Its use by every route: tests/test_api_contract.py and tests/test_fuzz_openapi.py.)"""

from __future__ import annotations

import sys

import pytest

from service.api.json_body import InvalidJsonBody, parse_json_body


@pytest.mark.parametrize(
    ("raw", "data"),
    [
        (b'{"prompt": "hi", "max_tokens": 5}', {"prompt": "hi", "max_tokens": 5}),
        (b" [1, 2.5, true, null] \n", [1, 2.5, True, None]),
        (b'"just a string"', "just a string"),
        ('{"text": "héllo ✓"}'.encode(), {"text": "héllo ✓"}),
        (b'"\\ud83d\\ude00"', "\U0001f600"),  # an escaped surrogate pair is one character
        (b'"\\u00e9\\n"', "é\n"),
        (b'{"a": 1, "a": 2}', {"a": 2}),  # as Python's json: the last one wins
    ],
)
def test_json_is_read(raw, data):
    assert parse_json_body(raw) == data


def test_integers_up_to_the_digit_limit_are_read():
    limit = sys.get_int_max_str_digits()
    assert parse_json_body(b"9" * limit) == int("9" * limit)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xff{}", "the body is not UTF-8 (byte 0)"),
        (b'{"a": "\xe9"}', "the body is not UTF-8 (byte 7)"),  # Latin-1
        (b'"\xed\xa0\x80"', "the body is not UTF-8 (byte 1)"),  # a surrogate encoded as UTF-8
        (b"\xef\xbb\xbf{}", "the body is not JSON: Unexpected UTF-8 BOM"),
        (b"", "the body is not JSON: Expecting value (line 1, column 1)"),
        (b'{"a": 1,}', "the body is not JSON: Expecting property name enclosed in double quotes (line 1, column 9)"),
        (b'{\n"a": tru}', "(line 2, column 6)"),
        (b"{'a': 1}", "the body is not JSON"),
        (b'{"a": NaN}', "the body is not JSON: NaN is not a JSON value"),
        (b"[Infinity]", "the body is not JSON: Infinity is not a JSON value"),
        (b"-Infinity", "the body is not JSON: -Infinity is not a JSON value"),
        (b"[" * 100_000 + b"]" * 100_000, "the body is nested too deeply"),
        (b'"\\ud800"', "lone UTF-16 surrogate"),
        (b'"\\udc00\\ud800"', "lone UTF-16 surrogate"),  # a pair in the wrong order is two lone ones
        (b'{"k\\udfff": 1}', "lone UTF-16 surrogate"),  # in a key too
        (b'[[{"deep": ["x\\ud83d"]}]]', "lone UTF-16 surrogate"),
    ],
)
def test_anything_else_is_refused_with_a_reason(raw, why):
    with pytest.raises(InvalidJsonBody) as refused:
        parse_json_body(raw)
    assert why in str(refused.value)


def test_an_integer_over_the_digit_limit_is_refused_naming_the_limit():
    limit = sys.get_int_max_str_digits()
    with pytest.raises(InvalidJsonBody, match=f"more than {limit} digits"):
        parse_json_body(b'{"n": ' + b"1" * (limit + 1) + b"}")


def test_the_refusal_is_a_value_error_with_no_chained_cause():
    # No traceback of the parser's internals rides along into logs or error pages.
    with pytest.raises(ValueError) as refused:
        parse_json_body(b"\xff")
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
