"""Bad input at scale: schemathesis fuzzes every operation of `/openapi.json` against the
running stack (the API and a worker, as real processes), with every check it has.

Each operation gets the coverage phase (boundary and invalid values derived from the schema,
unexpected methods, missing headers) and a bounded number of generated cases, valid and
invalid (`GenerationMode.POSITIVE` and `NEGATIVE`), as alice. Whatever comes in, the answer
is never a 5xx, every error is the one JSON error shape (docs/api.md), and a request the
document calls valid is accepted (`positive_data_acceptance`): the document says what the
API really accepts, configured bounds included (service/api/openapi.py).

The generator only knows what the document says, so the document itself is checked too:
every `$ref` resolves, and every request body is one schemathesis can generate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.api.schemas import METADATA_KEY_MAX
from service.app import create_app
from service.config import JobLimits, Settings, parse_api_keys
from service.jobs.observability.usage import MAX_REPORT_DAYS
from tests.support.error_shape import assert_error_shape
from tests.support.keys import ALICE, API_KEYS
from tests.support.processes import Processes
from tests.support.stack import launch_api, launch_worker, stack_env

MAX_EXAMPLES = 40  # generated cases per operation, positive and negative together; the coverage phase adds its own
SEED = 20240601


def served_document() -> dict[str, Any]:
    """The document as the API serves it, read from an app built only for that: building one
    contacts no Redis, so the schema exists at collection time. (The lazy loader,
    `schemathesis.pytest.from_fixture`, fails on pytest 9.2: it sets `Function._nodeid`, which
    pytest renamed.) Loaded as a plain document, not as a WSGI app, so that every case goes over
    HTTP to the API of the `stack` fixture, which runs with the same (default) bounds."""
    app = create_app(Settings(api_keys=parse_api_keys(API_KEYS)))
    return app.test_client().get("/openapi.json").get_json()


def load_schema() -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_dict(served_document(), config=schemathesis.Config(seed=SEED))
    # Sent with every case, except the coverage phase's "missing Authorization" ones (401 expected there).
    loaded.config.update(headers=dict(ALICE))
    loaded.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    return loaded


schema = load_schema()


# Every operation is fuzzed against one stack (per test process): its submits would use up
# another operation's rate limits, which are not what this test is about.
SHARED_STACK_LIMITS = {"RATE_LIMIT": "1000000/minute", "LIST_RATE_LIMIT": "1000000/minute",
                       "UPLOAD_RATE_LIMIT": "1000000/hour"}  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server, fake_anthropic) -> Iterator[str]:
    """The API and a worker on every queue (so `/readyz` is ready), started once for the
    module: one stack per case cost ~40 API and worker starts. The API's base URL."""
    connection = redis.Redis.from_url(redis_server.url)
    connection.flushall()
    processes = Processes(tmp_path_factory.mktemp("fuzz-stack"))
    env = {**stack_env(redis_server, fake_anthropic), **SHARED_STACK_LIMITS}
    try:
        launch_worker(processes, env, connection)
        yield launch_api(processes, env)
    finally:
        processes.stop_all()


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
    ],
)
def test_no_input_breaks_the_api(case, stack):
    response = case.call(base_url=stack, timeout=30)

    if response.status_code >= 400:
        assert_error_shape(response)
    excluded = [positive_data_acceptance] if stated_only_in_words(case) else []
    case.validate_response(response, headers=ALICE, excluded_checks=excluded, transport_kwargs={"base_url": stack})


def stated_only_in_words(case) -> bool:
    """A valid-looking case that breaks a rule the document states in a description, because
    OpenAPI 3.0 has no keyword for it: it is rightly refused (422), so "valid data is accepted"
    does not apply. Everything else the API refuses is in the document's keywords."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return False
    query, headers, body = case.query or {}, case.headers or {}, case.body
    if "cursor" in query or "Last-Event-ID" in headers:
        return True  # opaque: only values the API gave out are valid, and no generator has one
    if case.path == "/v1/usage":
        return usage_window_too_wide(query)
    if case.path == "/v1/documents":
        return True  # the file's content decides its type (415); no keyword says "a PDF"
    requests = [body, *body.get("jobs", [])] if isinstance(body, dict) else []  # a job, or a batch and its jobs
    return any(isinstance(request, dict) and breaks_a_worded_body_rule(request) for request in requests)


def usage_window_too_wide(query: dict[str, Any]) -> bool:
    """`from` at most MAX_REPORT_DAYS before `to` (a relation between two parameters)."""
    try:
        until = date.fromisoformat(query["to"]) if "to" in query else datetime.now(UTC).date()
        since = date.fromisoformat(query["from"]) if "from" in query else None
    except (TypeError, ValueError):
        return False  # not a date: the document's `format: date` says so already
    return since is not None and not 0 <= (until - since).days <= MAX_REPORT_DAYS


def breaks_a_worded_body_rule(request: dict[str, Any]) -> bool:
    """Metadata keys 1..64 characters (no `propertyNames` in 3.0); the first message from
    the user (no per-position `items` in 3.0); `params` a Messages request of the schema its
    description names (`MessagesRequest`, not referenced: see service/api/openapi.py)."""
    if "params" in request:
        return True
    keys = request.get("metadata") if isinstance(request.get("metadata"), dict) else {}
    if any(not 1 <= len(key) <= METADATA_KEY_MAX for key in keys):
        return True
    messages = request.get("messages")
    return isinstance(messages, list) and bool(messages) and (messages[0] or {}).get("role") != "user"


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

    assert sorted(op.label for op in with_body) == ["POST /v1/batches", "POST /v1/documents", "POST /v1/jobs"]
    assert [op.label for op in with_body if not list(op.body)] == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_are_documented_without_auth(client, path):
    """They answer without a key, so the document must not ask for one (`security: []` overrides
    the document-wide bearerAuth)."""
    operation = client.get("/openapi.json").get_json()["paths"][path]["get"]

    assert client.get(path).status_code != 401
    assert operation.get("security") == []


# --- helpers ---------------------------------------------------------------------------


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


def test_the_document_says_what_the_api_accepts(client):
    """Found by the fuzzer (positive_data_acceptance): the document offered requests the API
    refuses. Bounds are this deployment's settings; rules without a keyword are in the words."""
    document = client.get("/openapi.json").get_json()
    job = document["components"]["schemas"]["JobRequest"]
    events = document["paths"]["/v1/jobs/{job_id}/events"]["get"]
    content = document["components"]["schemas"]["Message"]["properties"]["content"]["oneOf"]

    beside_params = {"anyOf": [{"required": [name]} for name in ("system", "model", "max_tokens", "temperature")]}
    assert job["oneOf"] == [
        {"required": ["prompt"]}, {"required": ["messages"]}, {"required": ["params"], "not": beside_params}
    ]  # fmt: skip
    assert (job["properties"]["max_tokens"]["minimum"], job["properties"]["max_tokens"]["maximum"]) == (1, 64000)
    assert job["properties"]["timeout_s"]["maximum"] == 600
    assert "callback_url" not in job["properties"]  # the tests' app has no WEBHOOK_SECRET: webhooks off
    assert [(variant.get("minLength"), variant.get("minItems")) for variant in content] == [(1, None), (None, 1)]
    assert list(events["responses"]["200"]["content"]) == ["text/event-stream"]
    assert "Opaque" in next(p for p in events["parameters"] if p["name"] == "Last-Event-ID")["description"]
    usage_from = next(p for p in document["paths"]["/v1/usage"]["get"]["parameters"] if p["name"] == "from")
    assert "400 days" in usage_from["description"]


def test_the_document_follows_the_configured_bounds():
    settings = Settings(api_keys=parse_api_keys(API_KEYS), limits=JobLimits(max_output_tokens=100, max_timeout_s=30))
    settings = replace(settings, webhook_secret="whsec_" + "A" * 32, max_batch_jobs=7)
    schemas = create_app(settings).test_client().get("/openapi.json").get_json()["components"]["schemas"]

    assert schemas["JobRequest"]["properties"]["max_tokens"]["maximum"] == 100
    assert schemas["JobRequest"]["properties"]["timeout_s"]["maximum"] == 30
    assert schemas["MessagesRequest"]["properties"]["max_tokens"]["maximum"] == 100
    assert schemas["BatchRequest"]["properties"]["jobs"]["maxItems"] == 7
    assert "callback_url" in schemas["JobRequest"]["properties"]  # webhooks on: offered


def test_the_document_offers_callback_url_with_only_per_client_webhook_secrets():
    """Issue 27: with WEBHOOK_SECRETS alone (no WEBHOOK_SECRET), the clients it names have
    webhooks, so the document offers `callback_url` (it dropped it: it tested WEBHOOK_SECRET only)."""
    settings = Settings(api_keys=parse_api_keys(API_KEYS), webhook_secrets={"alice": ("whsec_" + "A" * 32,)})
    schemas = create_app(settings).test_client().get("/openapi.json").get_json()["components"]["schemas"]

    for name in ("JobRequest", "BatchJobRequest", "BatchRequest", "DocumentJson"):
        assert "callback_url" in schemas[name]["properties"], name


@pytest.mark.parametrize(
    "body",
    [
        '{"prompt": "hi", "max_tokens": ' + "9" * 4301 + "}",
        '{"prompt": "hi", "metadata": {"a": ' + "[" * 50_000 + "]" * 50_000 + "}}",
        '{"prompt": "\\ud800"}',
    ],
    ids=["int-4301-digits", "nested-50000-deep", "lone-surrogate"],
)
def test_bodies_no_generator_sends_are_a_json_400_from_the_stack(stack, body):
    """Issue 9 items 17 and 18, through gunicorn: the generator cannot make these bodies (its
    client-side json.dumps refuses them too), so they are sent as bytes."""
    headers = {**ALICE, "Content-Type": "application/json", "Idempotency-Key": "fuzz-1"}

    response = requests.post(f"{stack}/v1/jobs", data=body.encode(), headers=headers, timeout=30)

    assert_error_shape(response, 400)
