"""Usage accounting: counters added by the completing save itself (each job counted once),
and GET /v1/usage over real processes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import requests

from service.jobs.observability.usage import usage_report
from service.jobs.running.progress import Superseded
from service.jobs.storage.keys import usage_key
from tests.support.jobs import TERMINAL, submit
from tests.support.jobs_in_redis import DEFAULT_MODEL, complete, started_runs
from tests.support.keys import ALICE, BOB
from tests.support.waiting import wait_for

# --- counting, in-process on a real Redis ---------------------------------------------------


def counters(redis_conn, client: str = "alice") -> dict[str, int]:
    stored = redis_conn.hgetall(usage_key(datetime.now(UTC).date(), client))
    return {field.decode(): int(value) for field, value in stored.items()}


NO_CACHE = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}  # counted apart from input_tokens


def test_a_job_that_ran_twice_is_counted_once(redis_conn):
    first, second = started_runs(redis_conn, DEFAULT_MODEL, runs=2)
    complete(first, 12, 40, 0.000424)
    with pytest.raises(Superseded):
        complete(second, 99, 99, 0.5)  # the other run, finishing later, adds nothing
    with pytest.raises(Superseded):
        complete(first, 12, 40, 0.000424)  # nor does the winner's completion, retried

    assert counters(redis_conn) == {
        f"{DEFAULT_MODEL}:jobs": 1,
        f"{DEFAULT_MODEL}:input_tokens": 12,
        f"{DEFAULT_MODEL}:output_tokens": 40,
        f"{DEFAULT_MODEL}:cost_micro_usd": 424,
    }
    ttl = redis_conn.ttl(usage_key(datetime.now(UTC).date(), "alice"))
    assert 3 * 86400 - 60 < ttl <= 3 * 86400  # USAGE_RETENTION_DAYS, passed by the task


def test_a_model_without_a_price_counts_tokens_and_an_unpriced_job_but_no_cost(redis_conn):
    (priced,) = started_runs(redis_conn, DEFAULT_MODEL)
    (unpriced,) = started_runs(redis_conn, "mystery-model-1")
    complete(priced, 5, 6, 0.000070)
    complete(unpriced, 7, 8, None)

    stored = counters(redis_conn)
    assert {name: value for name, value in stored.items() if name.startswith("mystery-model-1:")} == {
        "mystery-model-1:jobs": 1,
        "mystery-model-1:input_tokens": 7,
        "mystery-model-1:output_tokens": 8,
        "mystery-model-1:cost_micro_usd": 0,
        "mystery-model-1:unpriced_jobs": 1,
    }
    assert f"{DEFAULT_MODEL}:unpriced_jobs" not in stored
    today = datetime.now(UTC).date()
    assert usage_report(redis_conn, "alice", today, today, "model") == [
        {"model": DEFAULT_MODEL, "jobs": 1, "input_tokens": 5, "output_tokens": 6, "cost_usd": 0.00007,
         "unpriced_jobs": 0, **NO_CACHE},
        {"model": "mystery-model-1", "jobs": 1, "input_tokens": 7, "output_tokens": 8, "cost_usd": 0.0,
         "unpriced_jobs": 1, **NO_CACHE},
    ]  # fmt: skip


def test_the_report_groups_only_the_asked_days_of_the_asked_client(redis_conn):
    day1, day2, day3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
    redis_conn.hset(usage_key(day1, "alice"), mapping={"m:a:jobs": 1, "m:a:input_tokens": 10, "m:a:cost_micro_usd": 5})
    redis_conn.hset(usage_key(day2, "alice"), mapping={"b:jobs": 2, "b:output_tokens": 3, "m:a:jobs": 1})
    redis_conn.hset(usage_key(day3, "alice"), mapping={"b:jobs": 100})  # outside the range asked
    redis_conn.hset(usage_key(day2, "bob"), mapping={"b:jobs": 100})  # another client

    zero = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "unpriced_jobs": 0, **NO_CACHE}
    assert usage_report(redis_conn, "alice", day1 - timedelta(days=1), day2, "day") == [
        {**zero, "day": "2026-03-01", "jobs": 1, "input_tokens": 10, "cost_usd": 0.000005},
        {**zero, "day": "2026-03-02", "jobs": 3, "output_tokens": 3},
    ]
    assert usage_report(redis_conn, "alice", day1, day2, "model") == [
        {**zero, "model": "b", "jobs": 2, "output_tokens": 3},
        {**zero, "model": "m:a", "jobs": 2, "input_tokens": 10, "cost_usd": 0.000005},  # a model name with ':'
    ]
    assert usage_report(redis_conn, "alice", day1, day2, "client") == [
        {"client": "alice", "jobs": 4, "input_tokens": 10, "output_tokens": 3, "cost_usd": 0.000005, "unpriced_jobs": 0,
         **NO_CACHE}
    ]  # fmt: skip
    assert usage_report(redis_conn, "alice", day3 + timedelta(days=1), day3 + timedelta(days=9), "day") == []


# --- GET /v1/usage, end to end ---------------------------------------------------------------


def finished(api: str, job_id: str, headers: dict) -> dict:
    def get() -> dict:
        return requests.get(f"{api}/v1/jobs/{job_id}", headers=headers, timeout=10).json()

    return wait_for(lambda: (job := get())["status"] in TERMINAL and job, 20, what=f"job {job_id}")


def usage(api: str, headers: dict = ALICE, **query: str) -> requests.Response:
    return requests.get(f"{api}/v1/usage", params=query, headers=headers, timeout=10)


def figures(jobs: list[dict]) -> dict:
    return {
        "jobs": len(jobs),
        "input_tokens": sum(job["result"]["usage"]["input_tokens"] for job in jobs),
        "output_tokens": sum(job["result"]["usage"]["output_tokens"] for job in jobs),
        "cost_usd": pytest.approx(sum(job["result"]["cost_usd"] for job in jobs), abs=1e-9),
        "unpriced_jobs": 0,
        **NO_CACHE,
    }


def assert_error(response: requests.Response, code: int, field: str | None = None) -> None:
    assert response.status_code == code, response.text
    body = response.json()
    assert set(body) <= {"code", "status", "message", "errors"} and body["code"] == code and body["message"], body
    if field is not None:
        assert field in body["errors"]["query"], body


def test_usage_report_sums_the_clients_completed_jobs(start_api, start_worker):
    api = start_api()
    start_worker()
    today = datetime.now(UTC).date()
    alice_ids = [
        submit(api, {"prompt": "one [[fake: tokens=7]]"})["id"],
        submit(api, {"prompt": "two, longer [[fake: tokens=5]]"})["id"],
        submit(api, {"prompt": "three [[fake: tokens=3]]", "model": "claude-haiku-4-5"})["id"],
        submit(api, {"prompt": "four, a bit longer [[fake: tokens=9]]", "model": "claude-haiku-4-5"})["id"],
    ]
    failed_id = submit(api, {"prompt": "bad [[fake: error=400]]"})["id"]
    bob_id = submit(api, {"prompt": "bob's [[fake: tokens=11]]"}, BOB)["id"]

    alice_jobs = [finished(api, job_id, ALICE) for job_id in alice_ids]
    assert [job["status"] for job in alice_jobs] == ["succeeded"] * 4
    assert finished(api, failed_id, ALICE)["status"] == "failed"
    bob_job = finished(api, bob_id, BOB)
    assert bob_job["status"] == "succeeded"

    by_model = usage(api, group_by="model")
    assert by_model.status_code == 200, by_model.text
    report = by_model.json()
    assert report["group_by"] == "model"
    assert report["to"] in {today.isoformat(), datetime.now(UTC).date().isoformat()}
    assert date.fromisoformat(report["to"]) - date.fromisoformat(report["from"]) == timedelta(days=30)
    assert report["data"] == [
        {"model": model, **figures([job for job in alice_jobs if job["model"] == model])}
        for model in ("claude-haiku-4-5", DEFAULT_MODEL)
    ]
    # the failed job and bob's job add nothing to alice's figures
    assert report["total"] == figures(alice_jobs)
    assert report["total"]["cost_usd"] > 0

    by_day = usage(api, group_by="day").json()
    assert [row["day"] for row in by_day["data"]] in ([today.isoformat()], [datetime.now(UTC).date().isoformat()])
    assert by_day["total"] == figures(alice_jobs)
    assert usage(api, group_by="client").json()["data"] == [{"client": "alice", **figures(alice_jobs)}]
    assert usage(api, BOB, group_by="client").json()["data"] == [{"client": "bob", **figures([bob_job])}]

    assert usage(api, **{"from": "2020-01-01", "to": "2020-01-31"}).json()["data"] == []  # another range

    assert_error(usage(api, group_by="week"), 422, "group_by")
    assert_error(usage(api, **{"from": "2026-13-01"}), 422, "from")
    assert_error(usage(api, **{"from": "2026-03-02", "to": "2026-03-01"}), 422, "from")
    assert_error(usage(api, **{"from": "2025-01-01", "to": "2026-03-01"}), 422, "from")  # over 400 days
    assert_error(usage(api, headers={}), 401)
