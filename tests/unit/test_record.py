"""The job record (service/jobs/storage/record.py): a typed view over `job.meta`, the one
place our fields are declared. Pure: a Job needs a connection object, never a server."""

import pytest
from redis import Redis
from rq.job import Job

from service.documents.steps import new_steps
from service.jobs.storage.queues import SERIALIZER
from service.jobs.storage.record import DOCUMENT, MESSAGE, JobRecord, has_unreadable_record, new_meta
from service.llm.errors import LLMError
from service.tasks.failed_calls import provider_error

NEW = {"client": "alice", "priority": "high", "model": "m", "metadata": {"k": "v"}, "timeout_s": 60,
       "attempt_limit": 3, "callback_url": None}  # fmt: skip


def job_with(meta: dict) -> Job:
    job = Job("job-1", connection=Redis(), serializer=SERIALIZER)  # never connects
    job.meta = meta
    return job


def test_absent_fields_read_as_their_defaults_and_are_not_written():
    job = job_with({})
    record = JobRecord(job)
    assert (record.kind, record.attempts, record.attempt_limit, record.text, record.output_tokens) == (
        MESSAGE, 0, 1, "", 0)  # fmt: skip
    assert record.error is record.result is record.webhook is record.deadline_at is record.batch_id is None
    assert (record.metadata, record.steps, record.analyses, record.partials, record.percent) == ({}, [], {}, {}, 0)
    record.metadata["k"] = "v"  # a default read is a fresh value, not stored
    assert record.metadata == {}
    assert job.meta == {}


def test_a_required_field_read_absent_raises_like_a_missing_key():
    with pytest.raises(KeyError, match="client"):
        _ = JobRecord(job_with({})).client


def test_writes_land_in_job_meta_and_a_delete_removes_the_key():
    job = job_with({})
    record = JobRecord(job)
    record.attempts += 1
    record.deadline_at = 12.5
    record.error = {"type": "timeout", "message": "late", "retryable": False}
    assert job.meta == {"attempts": 1, "deadline_at": 12.5, "error": {"type": "timeout", "message": "late",
                                                                        "retryable": False}}  # fmt: skip
    del record.deadline_at
    del record.deadline_at  # absent already: nothing to do
    assert "deadline_at" not in job.meta


def test_a_stored_value_is_read_as_the_same_object_so_changes_to_it_are_kept():
    job = job_with(new_meta(**NEW, document=_document(), steps=new_steps(["summary"])))
    record = JobRecord(job)
    record.steps[0]["status"] = "running"
    assert job.meta["steps"][0]["status"] == "running"


def test_a_rebound_meta_is_seen():
    job = job_with({"attempts": 1})
    record = JobRecord(job)
    job.meta = {"attempts": 4}  # as the guarded save does, adopting another run's record
    assert record.attempts == 4
    record.text = "x"
    assert job.meta == {"attempts": 4, "text": "x"}


def test_a_new_jobs_meta_and_its_round_trip_through_rqs_serializer():
    meta = new_meta(**NEW, batch_id="b-1")
    # The keys, their values and their order are what the service has always stored.
    assert list(meta.items()) == [
        ("client", "alice"), ("priority", "high"), ("model", "m"), ("metadata", {"k": "v"}), ("timeout_s", 60),
        ("attempts", 0), ("attempt_limit", 3), ("output_tokens", 0), ("text", ""), ("callback_url", None),
        ("batch_id", "b-1"),
    ]  # fmt: skip
    stored = SERIALIZER.dumps(job_with(meta).meta)  # what RQ writes to the job hash's `meta` field
    restored = job_with(SERIALIZER.loads(stored))
    record = JobRecord(restored)
    assert list(restored.meta.items()) == list(meta.items())
    assert (record.client, record.priority, record.timeout_s, record.batch_id, record.kind) == (
        "alice", "high", 60, "b-1", MESSAGE)  # fmt: skip


def test_a_document_jobs_meta():
    meta = new_meta(**NEW, document=_document(), steps=new_steps(["summary"]))
    assert list(meta)[-4:] == ["kind", "document", "steps", "percent"]
    record = JobRecord(job_with(meta))
    assert (record.kind, record.document["media_type"], record.percent) == (DOCUMENT, "text/plain", 0)


def test_an_unreadable_record_is_told_apart():
    assert has_unreadable_record(job_with({"unserialized": "..."}))
    assert not has_unreadable_record(job_with({}))


def test_a_provider_error_keeps_the_providers_type_and_message():
    error = LLMError("overloaded_error", "Overloaded", retryable=True, status_code=529, retry_after_s=2.0)
    assert provider_error(error) == {"type": "overloaded_error", "message": "Overloaded", "retryable": True}


def _document() -> dict:
    return {"filename": "a.txt", "media_type": "text/plain", "bytes": 3, "pages": None, "characters": None}
