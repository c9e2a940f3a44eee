"""POST /v1/documents in-process: both body forms, the options, and every refusal in the
one error shape (413, 415, 422). Running the jobs is in test_documents_end_to_end."""

from __future__ import annotations

import base64
import io
import json

import pytest
from rq.job import Job

from service.api.schemas import JobSchema
from service.jobs.storage.keys import upload_key
from service.jobs.storage.queues import DOCUMENT_TASK
from tests import documents
from tests.support.jobs import post_job_in_app
from tests.support.keys import ALICE, BOB

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def upload(client, data: bytes, filename: str = "report.pdf", headers: dict = ALICE, **fields: str):
    form = {"file": (io.BytesIO(data), filename), **fields}
    return client.post("/v1/documents", data=form, headers=headers, content_type="multipart/form-data")


def assert_error_shape(response, code: int) -> dict:
    assert response.status_code == code, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == code and body["status"] and body["message"]
    return body


def test_multipart_upload_queues_a_document_job(client, redis_conn) -> None:
    data = documents.pdf(documents.report_pages(2, lines_per_page=3))
    response = upload(client, data, metadata='{"ticket": "T-9"}', max_tokens="300", priority="high")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert set(job) == set(JobSchema().fields)  # the documented schema carries every field
    assert job["kind"] == "document" and job["status"] == "queued" and job["priority"] == "high"
    assert job["metadata"] == {"ticket": "T-9"}
    assert job["document"] == {
        "filename": "report.pdf", "media_type": "application/pdf", "bytes": len(data), "pages": None,
        "characters": None,
    }  # fmt: skip
    assert [step["name"] for step in job["steps"]] == ["extract", "summary", "key_points", "sentiment", "topics"]
    assert {step["status"] for step in job["steps"]} == {"pending"}
    assert job["progress"]["percent"] == 0
    # Stored with the job, expiring: the worker deletes it once the text is extracted.
    assert redis_conn.get(upload_key(job["id"])) == data
    assert redis_conn.ttl(upload_key(job["id"])) > 0
    rq_job = Job.fetch(job["id"], connection=redis_conn, serializer="rq.serializers.JSONSerializer")
    assert rq_job.func_name == DOCUMENT_TASK
    assert rq_job.kwargs["request"]["max_tokens"] == 300
    # It is one of the client's jobs, and no one else's.
    assert client.get(f"/v1/jobs/{job['id']}", headers=ALICE).get_json()["kind"] == "document"
    assert client.get(f"/v1/jobs/{job['id']}", headers=BOB).status_code == 404


def test_message_jobs_say_their_kind(client) -> None:
    response = post_job_in_app(client, {"prompt": "hi"})
    assert response.get_json()["kind"] == "message"
    assert "steps" not in response.get_json()


def test_options_as_one_json_part_and_custom_analyses(client) -> None:
    options = {
        "analyses": ["summary", {"name": "risks", "prompt": "List the risks.", "output": "json"}],
        "extraction": "native",
    }
    response = upload(client, documents.pdf([["hello"]]), options=json.dumps(options))
    assert response.status_code == 202, response.get_json()
    assert [step["name"] for step in response.get_json()["steps"]] == ["extract", "summary", "risks"]
    response = upload(client, documents.docx(["hello"]), "memo.docx", analyses="summary, topics")
    assert [step["name"] for step in response.get_json()["steps"]] == ["extract", "summary", "topics"]
    assert response.get_json()["document"]["media_type"] == DOCX_TYPE


def test_json_body_with_base64(client) -> None:
    body = {
        "document": {"filename": "page.html", "media_type": "text/html", "data": base64.b64encode(
            documents.HTML_PAGE.encode()).decode()},
        "analyses": ["topics"],
        "timeout_s": 120,
    }  # fmt: skip
    response = client.post("/v1/documents", json=body, headers=ALICE)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["document"]["media_type"] == "text/html"


def test_an_idempotency_key_returns_the_first_upload_and_refuses_another_body(client, redis_conn) -> None:
    data = documents.pdf([["quarterly figures"]])
    keyed = {**ALICE, "Idempotency-Key": "upload-7"}
    first = upload(client, data, headers=keyed, analyses="summary")
    assert first.status_code == 202, first.get_json()
    # The same file and options as base64 JSON: the same upload, the first job back, nothing new stored.
    as_json = {
        "document": {"filename": "report.pdf", "media_type": "application/pdf",
                     "data": base64.b64encode(data).decode()},
        "analyses": ["summary"],
    }  # fmt: skip
    again = client.post("/v1/documents", json=as_json, headers=keyed)
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert len(redis_conn.keys(upload_key("*"))) == 1
    # Another file, or other options, under the same key: 409, and nothing stored.
    other_file = upload(client, documents.pdf([["other figures"]]), headers=keyed, analyses="summary")
    assert_error_shape(other_file, 409)
    other_options = upload(client, data, headers=keyed, analyses="topics")
    assert_error_shape(other_options, 409)
    assert len(redis_conn.keys(upload_key("*"))) == 1
    # The key is the client's own: another client with the same key gets a job of its own.
    bob = upload(client, data, headers={**BOB, "Idempotency-Key": "upload-7"}, analyses="summary")
    assert bob.status_code == 202 and bob.get_json()["id"] != first.get_json()["id"]


def test_a_file_lying_about_its_type_is_415(client) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(100)
    body = assert_error_shape(upload(client, png, "report.pdf"), 415)
    assert "named 'report.pdf'" in body["message"]
    assert_error_shape(client.post("/v1/documents", data=b"x", headers=ALICE, content_type="image/png"), 415)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"analyses": "summary, gossip"}, "analyses"),
        ({"analyses": '["summary", "summary"]'}, "analyses"),
        ({"extraction": "ocr"}, "extraction"),
        ({"max_tokens": "0"}, "max_tokens"),
        ({"timeout_s": "99999"}, "timeout_s"),
        ({"metadata": "{not json"}, "metadata"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_options_are_422(client, fields: dict, where: str) -> None:
    body = assert_error_shape(upload(client, b"plain text", "a.txt", **fields), 422)
    assert where in body["errors"]["form"], body


def test_missing_file_and_bad_base64_are_422(client) -> None:
    response = client.post("/v1/documents", data={"analyses": "summary"}, headers=ALICE,
                           content_type="multipart/form-data")  # fmt: skip
    assert "file" in assert_error_shape(response, 422)["errors"]["form"]
    body = {"document": {"filename": "a.txt", "data": "***"}}
    response = client.post("/v1/documents", json=body, headers=ALICE)
    assert assert_error_shape(response, 422)["errors"]["json"]["document"]["data"]


def test_a_document_over_max_document_bytes_is_413(service_env, monkeypatch) -> None:
    from service.app import create_app

    for name in ("REDIS_URL", "API_KEYS"):
        monkeypatch.setenv(name, service_env[name])
    monkeypatch.setenv("MAX_DOCUMENT_BYTES", "1000")
    monkeypatch.setenv("MAX_BODY_BYTES", "1048576")
    client = create_app().test_client()
    assert upload(client, b"a" * 1000, "a.txt").status_code == 202
    body = assert_error_shape(upload(client, b"a" * 1001, "a.txt"), 413)
    assert "MAX_DOCUMENT_BYTES" in body["message"]
    # Far past it, the body is refused before it is read; still in the error shape.
    assert "MAX_DOCUMENT_BYTES" in assert_error_shape(upload(client, b"a" * 2_000_000, "a.txt"), 413)["message"]
    # The app's MAX_BODY_BYTES (1 MiB here) still bounds JSON jobs, which are not uploads.
    client = create_app().test_client()
    assert post_job_in_app(client, {"prompt": "a" * 1_100_000}).status_code == 413
