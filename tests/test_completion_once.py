"""A job that runs twice (re-queued while its first run only looked lost) ends once:
the first run to finish records the result; the other changes nothing."""

from __future__ import annotations

import pytest
from rq.job import Job

from service.jobs.running.progress import ProgressRecorder, Superseded, flush_progress, record_result, start_attempt
from service.jobs.storage.admission import Gate
from service.jobs.storage.queues import SERIALIZER, make_queues
from service.jobs.storage.resource import job_resource
from service.jobs.storage.submit import NewJob, submit_job


def two_runs_of_one_job(redis_conn) -> tuple[Job, Job]:
    request = {"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    new = NewJob(priority="default", request=request, metadata={}, timeout_s=60)
    submitted = submit_job(
        redis_conn, make_queues(redis_conn), new, gate=Gate.unlimited("alice"), max_attempts=3, result_ttl_s=600
    )
    first, second = (Job.fetch(submitted.job.id, connection=redis_conn, serializer=SERIALIZER) for _ in range(2))
    start_attempt(first)
    start_attempt(second)
    return first, second


def finish(job: Job, text: str) -> dict:
    usage = {"input_tokens": 1, "output_tokens": len(text.split())}
    message = {"content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "usage": usage}
    return record_result(
        job, message=message, text=text, output=None, usage=usage, cost_usd=0.1, keep_for_s=600,
        usage_retention_days=30,
    )  # fmt: skip


def test_the_first_run_to_finish_wins_and_the_other_cannot_overwrite_it(redis_conn):
    first, second = two_runs_of_one_job(redis_conn)
    assert finish(first, "from the first run")["text"] == "from the first run"

    late = ProgressRecorder(second)
    late.add("late text")  # a progress write from the other run, refused
    assert flush_progress(redis_conn, [late]) == [late]
    assert redis_conn.xlen(f"llmjobs:events:{first.id}") == 0
    with pytest.raises(Superseded):
        finish(second, "from the second run")

    stored = Job.fetch(first.id, connection=redis_conn, serializer=SERIALIZER)
    assert stored.meta["text"] == "from the first run"
    assert stored.meta["result"]["usage"]["output_tokens"] == 4
    # the loser adopts the winner's record, so RQ's own later save of it changes nothing
    assert second.meta == stored.meta


def test_a_run_that_starts_after_completion_does_not_start(redis_conn):
    first, _ = two_runs_of_one_job(redis_conn)
    finish(first, "done")
    again = Job.fetch(first.id, connection=redis_conn, serializer=SERIALIZER)
    with pytest.raises(Superseded):
        start_attempt(again)
    assert again.meta["attempts"] == first.meta["attempts"] == 1  # refused, so not counted: no call is made
    assert job_resource(again)["progress"]["text"] == "done"
