"""The HTTP contract of /v1/jobs (docs/api.md; docs/development/architecture.md §4), in-process on a real Redis.

No worker runs here, so every job stays `queued`; what is checked is what the API
answers and what it leaves in Redis: the RQ job, its queue, and the client's index.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any
from uuid import uuid4

import pytest
import redis
import rq
from rq.job import Job
from rq.serializers import JSONSerializer

import service.api.jobs
from service.api.schemas import JobSchema
from service.app import create_app
from service.config import Settings, load_settings
from service.jobs.storage.resource import job_resource
from tests.support.jobs import post_job_in_app, submit_in_app
from tests.support.keys import ALICE, API_KEYS, BOB
from tests.support.network import free_port
from tests.support.redis_calls import counting_redis_calls

PRIORITIES = ("high", "default", "low")
DEFAULT_MODEL = Settings().default_model  # LLM_DEFAULT_MODEL is not set in the tests
LLM_TASK = "service.tasks.llm_job.run_llm_job"
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
RESOURCE_KEYS = {
    "id", "kind", "status", "priority", "model", "progress", "result", "error", "attempts", "next_attempt_at",
    "created_at", "started_at", "finished_at", "metadata", "webhook", "links", "tier", "provider_batch",
}  # fmt: skip
STATUS_NAMES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# --- helpers ---------------------------------------------------------------------------


def fetch_rq_job(redis_conn: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)


def queued_ids(redis_conn: redis.Redis, name: str) -> list[str]:
    return rq.Queue(name, connection=redis_conn).job_ids


def assert_error(response, code: int, *, field: str | None = None, location: str = "json") -> dict[str, Any]:
    """The one error shape, as JSON, never HTML or a traceback; `field` is named in `errors`."""
    text = response.get_data(as_text=True)
    assert response.status_code == code, text
    assert response.mimetype == "application/json", text
    body = response.get_json()
    assert set(body) <= {"code", "status", "message", "errors"}, body
    assert body["code"] == code
    assert body["status"] == STATUS_NAMES[code]
    assert isinstance(body["message"], str) and body["message"].strip(), body
    assert "<html" not in text.lower() and "Traceback" not in text
    if field is not None:
        assert field in body["errors"][location], body
    return body


def assert_no_job_created(redis_conn: redis.Redis) -> None:
    assert {name: queued_ids(redis_conn, name) for name in PRIORITIES} == {name: [] for name in PRIORITIES}
    assert redis_conn.keys("rq:job:*") == []
    assert redis_conn.keys("llmjobs:client:*") == []


def list_jobs(client, headers: dict[str, str] = ALICE, **query: Any):
    return client.get("/v1/jobs", query_string=query, headers=headers)


# --- submit ----------------------------------------------------------------------------


def test_submit_prompt_answers_202_with_the_queued_job_resource(client, redis_conn):
    response = post_job_in_app(client, {"prompt": "hi"})

    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.get_json()
    job_id = job["id"]
    assert response.headers["Location"] == f"/v1/jobs/{job_id}"
    assert set(job) == RESOURCE_KEYS
    assert ISO_UTC.match(job["created_at"]), job["created_at"]
    assert {k: v for k, v in job.items() if k != "created_at"} == {
        "id": job_id,
        "kind": "message",
        "status": "queued",
        "priority": "default",
        "model": DEFAULT_MODEL,
        "progress": {"output_tokens": 0, "text": ""},
        "result": None,
        "error": None,
        "attempts": 0,
        "next_attempt_at": None,
        "started_at": None,
        "finished_at": None,
        "metadata": {},
        "webhook": None,
        "tier": "standard",
        "provider_batch": None,
        "links": {"self": f"/v1/jobs/{job_id}"},
    }


def test_the_documented_schema_carries_every_field_of_the_resource(client, redis_conn):
    """The response schema filters what it does not declare: it must not drift from the builder."""
    job_id = post_job_in_app(client, {"prompt": "hi"}).get_json()["id"]
    job = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    assert set(job_resource(job)) == RESOURCE_KEYS
    # A document job's resource adds these (test_documents_api checks it has them all).
    assert set(JobSchema().fields) == RESOURCE_KEYS | {"document", "steps"}


def test_submit_prompt_stores_and_enqueues_the_rq_job(client, redis_conn):
    job_id = submit_in_app(client, {"prompt": "hi"})["id"]

    rq_job = fetch_rq_job(redis_conn, job_id)
    assert rq_job.func_name == LLM_TASK
    assert rq_job.origin == "default"
    assert queued_ids(redis_conn, "default") == [job_id]
    assert queued_ids(redis_conn, "high") == queued_ids(redis_conn, "low") == []
    assert rq_job.meta["client"] == "alice"
    assert rq_job.kwargs["request"] == {
        "model": DEFAULT_MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_submit_stores_every_given_field(client, redis_conn):
    messages = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi there"},
        {"role": "user", "content": [{"type": "text", "text": "how are you?"}]},
    ]
    body = {
        "messages": messages,
        "system": "be brief",
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
        "priority": "high",
        "metadata": {"ticket": "T-1", "team": "search"},
        "timeout_s": 120,
    }
    response = post_job_in_app(client, body)

    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.get_json()
    assert (job["priority"], job["model"], job["metadata"]) == ("high", "claude-haiku-4-5", body["metadata"])
    rq_job = fetch_rq_job(redis_conn, job["id"])
    assert rq_job.origin == "high"
    assert queued_ids(redis_conn, "high") == [job["id"]]
    assert queued_ids(redis_conn, "default") == []
    assert rq_job.kwargs["request"] == {
        "model": "claude-haiku-4-5",
        "max_tokens": 50,
        "messages": messages,
        "system": "be brief",
    }
    assert rq_job.meta["timeout_s"] == 120
    assert rq_job.meta["metadata"] == body["metadata"]


def test_get_returns_the_same_resource_as_submit(client, redis_conn):
    created = post_job_in_app(client, {"prompt": "hi", "priority": "low", "metadata": {"a": "b"}}).get_json()

    response = client.get(f"/v1/jobs/{created['id']}", headers=ALICE)

    assert response.status_code == 200
    assert response.get_json() == created


def test_an_unchanged_job_is_a_bodiless_304_and_a_changed_one_a_new_etag(client, redis_conn):
    job_id = submit_in_app(client)["id"]
    first = client.get(f"/v1/jobs/{job_id}", headers=ALICE)
    etag = first.headers["ETag"]

    again = client.get(f"/v1/jobs/{job_id}", headers={**ALICE, "If-None-Match": etag})
    assert (again.status_code, again.data, again.headers["ETag"]) == (304, b"", etag)

    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=ALICE).status_code == 200
    changed = client.get(f"/v1/jobs/{job_id}", headers={**ALICE, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.get_json()["status"] == "canceled"
    assert changed.headers["ETag"] != etag
    # another client's ETag guess gets nothing either: the job is still a 404 to them
    assert client.get(f"/v1/jobs/{job_id}", headers={**BOB, "If-None-Match": etag}).status_code == 404


def test_job_is_stored_as_json_not_pickle(client, redis_conn):
    job_id = submit_in_app(client)["id"]

    raw = redis_conn.hget(f"rq:job:{job_id}", "data")
    assert raw is not None
    # RQ 2.x zlib-compresses the serialized (func, instance, args, kwargs) tuple.
    func_name, instance, args, kwargs = json.loads(zlib.decompress(raw))
    assert (func_name, instance, args) == (LLM_TASK, None, [])
    assert kwargs["request"]["messages"] == [{"role": "user", "content": "hi"}]
    assert json.loads(redis_conn.hget(f"rq:job:{job_id}", "meta"))["client"] == "alice"


def test_submit_is_one_redis_round_trip(client, redis_conn, monkeypatch):
    submit_in_app(client)  # warm-up: the queue caches the server version on first use
    with counting_redis_calls() as calls:
        response = post_job_in_app(client)

    assert response.status_code == 202
    # One script checks the client's limit and the queue's depth, then stores, enqueues and
    # indexes the job (service.jobs.storage.admission): nothing else goes to Redis.
    assert calls == {"pipeline": 0, "command": ["EVALSHA"]}


# --- validation ------------------------------------------------------------------------

MESSAGE = {"role": "user", "content": "hi"}
VALIDATION_CASES = [
    pytest.param({"model": DEFAULT_MODEL}, "_schema", id="neither-prompt-nor-messages"),
    pytest.param({"prompt": "hi", "messages": [MESSAGE]}, "_schema", id="both-prompt-and-messages"),
    pytest.param({"prompt": ""}, "prompt", id="empty-prompt"),
    pytest.param({"messages": []}, "messages", id="empty-messages"),
    pytest.param({"messages": [{"role": "system", "content": "hi"}]}, "messages", id="bad-role"),
    pytest.param({"messages": [{"role": "assistant", "content": "hi"}, MESSAGE]}, "messages", id="assistant-first"),
    pytest.param({"messages": [{"role": "user", "content": ""}]}, "messages", id="empty-content"),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "x"}}]}]},
        "messages",
        id="non-text-content-block",
    ),
    pytest.param({"messages": [{"role": "user", "content": 5}]}, "messages", id="content-of-wrong-type"),
    pytest.param({"messages": [MESSAGE] * 201}, "messages", id="201-messages"),
    pytest.param({"prompt": "hi", "max_tokens": 0}, "max_tokens", id="max_tokens-0"),
    pytest.param({"prompt": "hi", "max_tokens": 64001}, "max_tokens", id="max_tokens-64001"),
    pytest.param({"prompt": "hi", "max_tokens": "5"}, "max_tokens", id="max_tokens-string"),
    pytest.param({"prompt": "hi", "max_tokens": 5.5}, "max_tokens", id="max_tokens-float"),
    pytest.param({"prompt": "hi", "max_tokens": True}, "max_tokens", id="max_tokens-bool"),
    pytest.param({"prompt": "hi", "temperature": -0.1}, "temperature", id="temperature-below-0"),
    pytest.param({"prompt": "hi", "temperature": 1.1}, "temperature", id="temperature-above-1"),
    pytest.param({"prompt": "hi", "temperature": "hot"}, "temperature", id="temperature-not-a-number"),
    pytest.param({"prompt": "hi", "temperature": 0.5}, "temperature", id="temperature-any-value"),
    pytest.param({"prompt": "hi", "priority": "urgent"}, "priority", id="unknown-priority"),
    pytest.param({"prompt": "hi", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", id="17-metadata-keys"),
    pytest.param({"prompt": "hi", "metadata": {"k" * 65: "v"}}, "metadata", id="metadata-key-of-65-chars"),
    pytest.param({"prompt": "hi", "metadata": {"k": "v" * 513}}, "metadata", id="metadata-value-of-513-chars"),
    pytest.param({"prompt": "hi", "metadata": {"k": 1}}, "metadata", id="metadata-value-not-a-string"),
    pytest.param({"prompt": "hi", "timeout_s": 0}, "timeout_s", id="timeout_s-0"),
    pytest.param({"prompt": "hi", "timeout_s": 601}, "timeout_s", id="timeout_s-above-JOB_TIMEOUT_S"),
    pytest.param({"prompt": "hi", "colour": "blue"}, "colour", id="unknown-field"),
    pytest.param({"prompt": "hi", "model": "bad model name!"}, "model", id="bad-model-name"),
    pytest.param([{"prompt": "hi"}], "_schema", id="body-is-a-list"),
    pytest.param("hi", "_schema", id="body-is-a-string"),
]


@pytest.mark.parametrize(("body", "field"), VALIDATION_CASES)
def test_invalid_job_request_is_422_and_creates_nothing(client, redis_conn, body, field):
    assert_error(post_job_in_app(client, body), 422, field=field)
    assert_no_job_created(redis_conn)


def test_timeout_at_the_cap_is_accepted(client, redis_conn):
    job_id = submit_in_app(client, {"prompt": "hi", "timeout_s": 600})["id"]

    assert fetch_rq_job(redis_conn, job_id).meta["timeout_s"] == 600


# --- other errors ----------------------------------------------------------------------


def test_malformed_json_is_400(client, redis_conn):
    response = client.post("/v1/jobs", data='{"prompt": ', content_type="application/json", headers=ALICE)

    assert_error(response, 400)
    assert_no_job_created(redis_conn)


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("path", "body", "idempotency_key"),
    [
        ("/v1/jobs", '{"prompt": "hi", "max_tokens": ' + "9" * 4301 + "}", None),
        ("/v1/batches", '{"jobs": [{"prompt": "hi", "timeout_s": ' + "1" * 5000 + "}]}", None),
        ("/v1/jobs", DEEP, None),
        ("/v1/jobs", '{"prompt": "hi", "metadata": {"a": ' + DEEP + "}}", None),
        ("/v1/jobs", '{"prompt": "\\ud800"}', "key-1"),
        ("/v1/batches", '{"jobs": [{"prompt": "hi", "metadata": {"\\udfff": "x"}}]}', "key-2"),
        ("/v1/jobs", '{"prompt": "\\ud800"}', None),
        ("/v1/jobs", '{"prompt": "hi", "temperature": NaN}', None),
    ],
    ids=["int-4301-digits", "batch-int-5000-digits", "nested-arrays", "nested-in-metadata",
         "lone-surrogate-with-key", "batch-lone-surrogate-key-with-key", "lone-surrogate", "nan"],
)  # fmt: skip
def test_json_python_cannot_hold_is_400(client, redis_conn, path, body, idempotency_key):
    """Issue 9 items 17 and 18: these bodies raised ValueError, RecursionError or (hashing the
    body for the Idempotency-Key) UnicodeEncodeError: a 500. A lone surrogate without a key was
    queued, to fail at the provider. All are refused where every body is parsed."""
    headers = {**ALICE, **({"Idempotency-Key": idempotency_key} if idempotency_key else {})}

    response = client.post(path, data=body, content_type="application/json", headers=headers)

    assert list(assert_error(response, 400)["errors"]) == ["json"]
    assert_no_job_created(redis_conn)


def test_an_escaped_surrogate_pair_is_one_character(client, redis_conn):
    body = '{"prompt": "\\ud83d\\ude00"}'

    response = client.post("/v1/jobs", data=body, content_type="application/json", headers=ALICE)

    assert response.status_code == 202, response.get_data(as_text=True)
    assert (
        fetch_rq_job(redis_conn, response.get_json()["id"]).kwargs["request"]["messages"][0]["content"] == "\U0001f600"
    )


def test_a_body_past_the_providers_32_mb_is_413(client, redis_conn):
    body = json.dumps({"prompt": "x" * 32_000_000})

    refused = assert_error(client.post("/v1/jobs", data=body, content_type="application/json", headers=ALICE), 413)
    assert refused["message"] == "the request body is larger than MAX_BODY_BYTES (32000000 bytes)"
    assert_no_job_created(redis_conn)


def test_non_json_body_is_415(client, redis_conn):
    response = client.post("/v1/jobs", data='{"prompt": "hi"}', content_type="text/plain", headers=ALICE)

    assert_error(response, 415)
    assert_no_job_created(redis_conn)


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [("GET", "/nope", 404), ("DELETE", "/v1/jobs", 405), ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef", 404)],
)
def test_routing_errors_are_json(client, redis_conn, method, path, code):
    assert_error(client.open(path, method=method, headers=ALICE), code)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic xxx"}, {"Authorization": "Bearer "}],
    ids=["missing", "wrong-key", "basic-scheme", "empty-bearer"],
)
@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/x")])
def test_bad_credentials_are_401_with_a_challenge(client, redis_conn, headers, method, path):
    response = client.open(path, method=method, headers=headers, json={"prompt": "hi"} if method == "POST" else None)

    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert_no_job_created(redis_conn)


def test_unexpected_exception_is_a_json_500_without_details(app, client, redis_conn, monkeypatch):
    def boom(*args: Any, **kwargs: Any):
        raise RuntimeError("boom")

    assert not app.testing and app.config["PROPAGATE_EXCEPTIONS"] is not True
    monkeypatch.setattr(service.api.jobs, "submit_job", boom)

    response = post_job_in_app(client)

    assert_error(response, 500)
    assert "boom" not in response.get_data(as_text=True)


def test_redis_down_is_503_with_retry_after(monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("API_KEYS", API_KEYS)
    client = create_app(load_settings(require_api_keys=True)).test_client()

    for response in (post_job_in_app(client), list_jobs(client), client.get(f"/v1/jobs/{uuid4().hex}", headers=ALICE)):
        assert_error(response, 503)
        assert int(response.headers["Retry-After"]) > 0


def test_redis_at_maxmemory_is_503_with_retry_after(client, redis_conn):
    """With `maxmemory-policy noeviction` (what production wants), a full Redis refuses writes."""
    submit_in_app(client)
    memory = redis_conn.config_get("maxmemory*")
    redis_conn.config_set("maxmemory-policy", "noeviction")
    redis_conn.config_set("maxmemory", redis_conn.info("memory")["used_memory"] // 2)  # over it: no write passes
    try:
        response = post_job_in_app(client)
    finally:
        redis_conn.config_set("maxmemory", memory["maxmemory"])
        redis_conn.config_set("maxmemory-policy", memory["maxmemory-policy"])

    assert_error(response, 503)
    assert int(response.headers["Retry-After"]) > 0


# --- isolation and listing -------------------------------------------------------------


def test_another_clients_job_is_invisible(client, redis_conn):
    job_id = submit_in_app(client)["id"]

    assert_error(client.get(f"/v1/jobs/{job_id}", headers=BOB), 404)
    bobs = list_jobs(client, headers=BOB)
    assert bobs.status_code == 200
    assert bobs.get_json() == {"data": [], "next_cursor": None}
    assert [job["id"] for job in list_jobs(client).get_json()["data"]] == [job_id]


@pytest.fixture
def five_jobs(client, redis_conn) -> list[str]:
    """Five of alice's jobs, in creation order, over all priorities."""
    return [submit_in_app(client, {"prompt": f"job {i}", "priority": PRIORITIES[i % 3]})["id"] for i in range(5)]


def test_list_is_newest_first(client, five_jobs):
    response = list_jobs(client)

    assert response.status_code == 200
    page = response.get_json()
    assert [job["id"] for job in page["data"]] == five_jobs[::-1]
    assert [job["priority"] for job in page["data"]] == [PRIORITIES[i % 3] for i in range(5)][::-1]
    assert page["next_cursor"] is None


def test_list_pages_through_every_job_once(client, five_jobs):
    pages, cursor = [], None
    while True:
        response = list_jobs(client, limit=2, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.get_data(as_text=True)
        page = response.get_json()
        pages.append([job["id"] for job in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 5, "pagination does not end"

    assert [len(p) for p in pages] == [2, 2, 1]
    assert [job_id for page in pages for job_id in page] == five_jobs[::-1]


@pytest.mark.parametrize(("status", "expected"), [("queued", 5), ("succeeded", 0), ("failed", 0)])
def test_list_filters_by_status(client, five_jobs, status, expected):
    response = list_jobs(client, status=status)

    assert response.status_code == 200
    assert [job["id"] for job in response.get_json()["data"]] == five_jobs[::-1][:expected]
    assert all(job["status"] == status for job in response.get_json()["data"])


def test_a_status_filter_pages_through_every_matching_job_once(client, five_jobs):
    """A filtered page that fills midway through what it read ends at its last job: the next
    page starts after that one, not after what was read past it."""
    pages, cursor = [], None
    while len(pages) < 5:
        page = list_jobs(client, status="queued", limit=2, **({"cursor": cursor} if cursor else {})).get_json()
        pages.append([job["id"] for job in page["data"]])
        if (cursor := page["next_cursor"]) is None:
            break

    assert [job_id for page in pages for job_id in page] == five_jobs[::-1]
    assert [len(page) for page in pages] == [2, 2, 1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "MDAwMDAwMDAwMDAwMDAwMDpub3QtYW4taWQ"}, "cursor"),  # base64 of a malformed member
    ],
)
def test_bad_list_arguments_are_422(client, redis_conn, query, field):
    assert_error(list_jobs(client, **query), 422, field=field, location="query")


def test_list_skips_and_unindexes_expired_jobs(client, redis_conn, five_jobs):
    expired = five_jobs[2]
    redis_conn.delete(f"rq:job:{expired}")

    response = list_jobs(client)

    assert response.status_code == 200
    assert [job["id"] for job in response.get_json()["data"]] == [j for j in five_jobs[::-1] if j != expired]
    members = [m.decode() for m in redis_conn.zrange("llmjobs:client:alice:jobs", 0, -1)]
    assert len(members) == 4
    assert not any(m.endswith(expired) for m in members)


def test_a_record_rq_cannot_restore_never_fails_the_list(client, redis_conn, five_jobs):
    broken = five_jobs[1]
    redis_conn.hdel(f"rq:job:{broken}", "data")  # RQ's restore raises on it

    response = list_jobs(client)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert [job["id"] for job in response.get_json()["data"]] == [j for j in five_jobs[::-1] if j != broken]
    assert_error(client.get(f"/v1/jobs/{broken}", headers=ALICE), 404)  # as a read of it alone says


def test_expired_job_is_a_404(client, redis_conn):
    job_id = submit_in_app(client)["id"]
    redis_conn.delete(f"rq:job:{job_id}")

    assert_error(client.get(f"/v1/jobs/{job_id}", headers=ALICE), 404)


# --- documentation ---------------------------------------------------------------------


def test_openapi_document_needs_no_key_and_documents_the_routes(client):
    response = client.get("/openapi.json")

    assert response.status_code == 200
    spec = response.get_json()
    assert {"get", "post"} <= set(spec["paths"]["/v1/jobs"])
    assert "get" in spec["paths"]["/v1/jobs/{job_id}"]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert spec["security"] == [{"bearerAuth": []}]


def test_docs_need_no_key(client):
    response = client.get("/docs")

    assert response.status_code == 200
    assert "swagger" in response.get_data(as_text=True).lower()
