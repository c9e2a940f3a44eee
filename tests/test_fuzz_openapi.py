"""Bad input at scale: schemathesis fuzzes every operation of `/openapi.json`, in-process (WSGI).

Each operation gets the coverage phase (boundary and invalid values derived from the schema,
unexpected methods, missing headers) and a bounded number of generated cases, valid and
invalid (`GenerationMode.POSITIVE` and `NEGATIVE`), as alice. Whatever comes in, the answer
is never a 5xx, and every error is the JSON error shape of DESIGN.md section 2.

The generator only knows what the document says, so the document itself is checked too:
every `$ref` resolves, and every request body is one schemathesis can generate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from service.app import create_app
from service.config import Settings, parse_api_keys
from tests.conftest import ALICE, API_KEYS

ERROR_KEYS = {"code", "status", "message", "errors"}
MAX_EXAMPLES = 40  # generated cases per operation, positive and negative together; the coverage phase adds its own
SEED = 20240601

# Checks left out, and why:
# - positive_data_acceptance: OpenAPI 3.0 cannot say "exactly one of prompt/messages", nor the configurable
#   bounds (max_tokens, timeout_s, metadata key length), so "valid" generated bodies are rightly refused.
# - use_after_free, ensure_resource_availability: they need a stateful run (create, then read), not fuzzing.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    missing_required_header,
    unsupported_method,
]


def document_app():
    """An app built only to serve its document: building one contacts no Redis, so the schema
    exists at collection time. (The lazy loader, `schemathesis.pytest.from_fixture`, fails on
    pytest 9.2: it sets `Function._nodeid`, which pytest renamed.) Requests go to the `app`
    fixture's app, on the tests' Redis."""
    return create_app(Settings(api_keys=parse_api_keys(API_KEYS)))


def load_schema() -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_wsgi("/openapi.json", document_app(), config=schemathesis.Config(seed=SEED))
    # Sent with every case, except the coverage phase's "missing Authorization" ones (401 expected there).
    loaded.config.update(headers=dict(ALICE))
    loaded.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    return loaded


schema = load_schema()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        # One app and one Redis for all the examples of an operation: jobs piling up is fine.
        HealthCheck.function_scoped_fixture,
    ],
)
def test_no_input_breaks_the_api(case, app):
    response = case.call(app=app)

    checks = CHECKS
    if (case.method, case.path, response.status_code) == ("GET", "/readyz", 503):
        checks = [check for check in CHECKS if check is not not_a_server_error]  # documented: no worker runs here
    else:
        assert response.status_code < 500, describe(case, response)
    if response.status_code >= 400:
        assert_error_shape(response)
    case.validate_response(response, checks=checks, transport_kwargs={"app": app})


@pytest.mark.parametrize("job_id", [";", "a.b"])
@pytest.mark.parametrize(
    ("method", "template"), [("GET", "/v1/jobs/{}"), ("POST", "/v1/jobs/{}/cancel"), ("POST", "/v1/jobs/{}/retry")]
)
def test_a_job_id_of_any_shape_is_a_404(client, method, template, job_id):
    """Found by the fuzzer: RQ refuses ids outside [A-Za-z0-9_-] with a ValueError."""
    response = client.open(template.format(job_id), method=method, headers=ALICE)

    assert_error_shape(response, 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/v1/jobs", "GET POST"), ("GET", "/v1/jobs/0/cancel", "POST"), ("PUT", "/healthz", "GET")],
)
def test_a_405_names_the_allowed_methods(client, method, path, allowed):
    """Found by the fuzzer (unsupported_method): RFC 9110 requires `Allow` on a 405."""
    response = client.open(path, method=method, headers=ALICE)

    assert_error_shape(response, 405)
    assert set(allowed.split()) <= {name.strip() for name in response.headers.get("Allow", "").split(",")}


def test_every_ref_in_the_document_resolves(client):
    document = client.get("/openapi.json").get_json()

    dangling = sorted({ref for ref in refs(document) if resolve(document, ref) is None})

    assert dangling == []


def test_every_request_body_can_be_generated():
    """A body schemathesis cannot read (an unresolvable `$ref` is one way) is silently left out:
    the operation would be fuzzed without a body, and invalid bodies never sent."""
    operations = [result.ok() for result in schema.get_all_operations()]
    with_body = [op for op in operations if "requestBody" in op.definition.raw]

    assert sorted(op.label for op in with_body) == ["POST /v1/batches", "POST /v1/jobs"]
    assert [op.label for op in with_body if not list(op.body)] == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_are_documented_without_auth(client, path):
    """They answer without a key, so the document must not ask for one (`security: []` overrides
    the document-wide bearerAuth)."""
    operation = client.get("/openapi.json").get_json()["paths"][path]["get"]

    assert client.get(path).status_code != 401
    assert operation.get("security") == []


# --- helpers ---------------------------------------------------------------------------


def assert_error_shape(response, code: int | None = None) -> dict[str, Any]:
    """The one error shape of DESIGN.md section 2, for Flask's test responses and schemathesis' alike
    (schemathesis lowercases header names and gives each a list of values)."""
    headers = {name.lower(): value for name, value in response.headers.items()}
    content_type = headers.get("content-type", "")
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    text = response.text
    if code is not None:
        assert response.status_code == code, text
    assert content_type.startswith("application/json"), text
    body = json.loads(text)
    assert isinstance(body, dict) and set(body) <= ERROR_KEYS, body
    assert body["code"] == response.status_code, body
    assert body["status"] == HTTPStatus(response.status_code).phrase, body
    assert isinstance(body["message"], str) and body["message"].strip(), body
    return body


def describe(case, response) -> str:
    return f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
