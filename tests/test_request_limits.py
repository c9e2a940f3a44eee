"""Too-long request lines and headers, against the API as shipped (granian; issue 9 item 22).

The server answers a request past its own limits itself. The app's bounds
(service/api/request_limits.py) sit far below granian's, so a too-long request gets the JSON
error shape unless it is past the server's limits too; what granian answers then (a status
and no body: never HTML) is pinned here as docs/security.md ("Input limits") documents it.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from service.api.request_limits import MAX_HEADER_FIELD_BYTES, MAX_HEADER_FIELDS, MAX_REQUEST_TARGET_BYTES
from tests.support.keys import ALICE


def get(api: str, target: str, headers: dict[str, str]) -> tuple[int, str, str]:
    """(status, Content-Type, body) of a GET sent as is (http.client, no client-side limits)."""
    address = urlsplit(api)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def assert_json_error(answer: tuple[int, str, str], code: int) -> None:
    status, content_type, text = answer
    assert (status, content_type) == (code, "application/json"), text
    body = json.loads(text)
    assert body["code"] == code and body["message"], body


@pytest.fixture
def api(start_api) -> str:
    return start_api()


def test_a_request_target_past_the_apps_bound_is_a_json_414(api):
    target = "/v1/jobs?cursor=" + "a" * 6000

    assert_json_error(get(api, target, ALICE), 414)


def test_a_request_target_at_the_apps_bound_is_served(api):
    target = "/v1/jobs?cursor="
    target += "a" * (MAX_REQUEST_TARGET_BYTES - len(target))

    status, _, text = get(api, target, ALICE)

    assert status == 422, text  # an unknown cursor: read by the route, not refused for its length


def test_a_header_past_the_apps_bound_is_a_json_431(api):
    headers = {**ALICE, "X-Trace": "a" * 12_000}

    assert_json_error(get(api, "/v1/jobs", headers), 431)


def test_a_header_at_the_apps_bound_is_served(api):
    headers = {**ALICE, "X-Trace": "a" * (MAX_HEADER_FIELD_BYTES - len("X-Trace: "))}

    status, _, text = get(api, "/v1/jobs", headers)

    assert status == 200, text


def test_more_header_fields_than_the_app_reads_is_a_json_431(api):
    headers = {**ALICE, **{f"X-Extra-{n}": "1" for n in range(MAX_HEADER_FIELDS)}}  # granian lets these through

    assert_json_error(get(api, "/v1/jobs", headers), 431)


@pytest.mark.parametrize(
    ("target", "headers", "code"),
    [("/v1/jobs?cursor=" + "a" * 8200, {}, 414), ("/v1/jobs", {"X-Trace": "a" * 17_000}, 431)],
    ids=["request-line-over-8190", "header-over-16384"],
)
def test_what_gunicorn_answered_in_html_the_app_answers_in_json(api, target, headers, code):
    """Past gunicorn's limits (the server before granian), which sent its own HTML page."""
    assert_json_error(get(api, target, {**ALICE, **headers}), code)


@pytest.mark.parametrize(
    ("target", "headers", "code"),
    [
        ("/v1/jobs?cursor=" + "a" * 200_000, {}, 414),
        ("/v1/jobs", {"X-Trace": "a" * 1_000_000}, 431),
        ("/v1/jobs", {f"X-Extra-{n}": "1" for n in range(101)}, 431),
    ],
    ids=["request-target-over-64-kib", "header-over-the-buffer", "over-100-header-fields"],
)
def test_past_granians_limits_granian_answers_with_a_status_and_no_body(api, target, headers, code):
    """What docs/security.md says still comes from the server: a status line, never the app, never HTML."""
    status, content_type, text = get(api, target, {**ALICE, **headers})

    assert (status, content_type, text) == (code, "", "")
