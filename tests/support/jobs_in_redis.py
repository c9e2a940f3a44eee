"""Jobs made in the test's own process straight on a real Redis, with no API and no worker:
for the tests of what the job domain stores (usage, budgets)."""

from __future__ import annotations

from rq.job import Job

from service.jobs.running.progress import record_result, start_attempt
from service.jobs.storage.admission import Gate
from service.jobs.storage.queues import SERIALIZER, make_queues
from service.jobs.storage.submit import NewJob, submit_job

DEFAULT_MODEL = "claude-sonnet-5-5"


def started_runs(redis_conn, model: str, runs: int = 1) -> list[Job]:
    """`runs` fetched copies of one new job, each having started its attempt (a job that ran twice)."""
    request = {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    new = NewJob(priority="default", request=request, metadata={}, timeout_s=60)
    submitted = submit_job(
        redis_conn, make_queues(redis_conn), new, gate=Gate.unlimited("alice"), max_attempts=3, result_ttl_s=600
    )
    copies = [Job.fetch(submitted.job.id, connection=redis_conn, serializer=SERIALIZER) for _ in range(runs)]
    for job in copies:
        start_attempt(job)
    return copies


def complete(job: Job, input_tokens: int, output_tokens: int, cost: float | None) -> dict:
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    message = {
        "role": "assistant",
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": "end_turn",
        "usage": usage,
    }
    return record_result(
        job, message=message, text="x", output=None, usage=usage, cost_usd=cost, keep_for_s=600, usage_retention_days=3
    )
