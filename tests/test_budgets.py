"""Spend budgets per client (CLIENT_BUDGETS, DESIGN.md section 10): a submit reserves its worst
case in the admission script, a job's end releases it, and what calls cost never passes the
budget. In-process API on a real Redis here; real gunicorn, worker and fake provider in
test_budgets_end_to_end.py."""

from __future__ import annotations

import base64
import json
import math
import time
from datetime import UTC, datetime

import pytest
from rq.job import Job

from service.config import SettingsError, load_settings
from service.jobs.observability.budgets import release_jobs
from service.jobs.observability.worst_case import document_job_usd, message_job_usd
from service.jobs.operations.cleanup import release_lost_reservations
from service.jobs.running.progress import RunRefused, start_attempt
from service.jobs.storage.queues import SERIALIZER
from service.jobs.storage.record import JobRecord
from tests.support.error_shape import assert_error_shape
from tests.support.jobs import post_job_in_app
from tests.support.jobs_in_redis import DEFAULT_MODEL
from tests.support.keys import ALICE, BOB
from tests.support.prometheus import samples_of, value

BUDGET_USD = 0.05
MAX_TOKENS = 1000
PROMPT = "hello there"


def worst_case_usd(prompt: str = PROMPT, max_tokens: int = MAX_TOKENS) -> float:
    """What the API reserves for `{"prompt": prompt, "max_tokens": max_tokens}` (the request it stores)."""
    request = {"model": DEFAULT_MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}]}
    return math.ceil(message_job_usd(request, prices={}) * 1_000_000) / 1_000_000


@pytest.fixture
def budgeted(service_env, monkeypatch):
    """The API in-process with alice on a small daily budget and bob on none."""
    from service.app import create_app

    for name in ("REDIS_URL", "API_KEYS", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.setenv(name, service_env[name])
    monkeypatch.setenv("CLIENT_BUDGETS", f"alice={BUDGET_USD}/day")
    monkeypatch.setenv("RATE_LIMIT", "5/minute")
    return create_app().test_client()


def budget_of(client, headers=ALICE) -> dict:
    response = client.get("/v1/usage", headers=headers)
    assert response.status_code == 200, response.text
    return response.json["budget"]


def job_body(prompt: str = PROMPT, **more) -> dict:
    return {"prompt": prompt, "max_tokens": MAX_TOKENS, **more}


# --- the setting -----------------------------------------------------------------------------


def test_budgets_parse_in_micro_dollars_per_window(monkeypatch):
    monkeypatch.setenv("CLIENT_BUDGETS", "alpha=50/day, beta=1000.25/month")
    budgets = load_settings().client_budgets
    assert {name: (b.limit_micro_usd, b.window) for name, b in budgets.items()} == {
        "alpha": (50_000_000, "day"),
        "beta": (1_000_250_000, "month"),
    }


@pytest.mark.parametrize(
    "raw",
    ["alpha", "alpha=50", "alpha=50/week", "alpha=fifty/day", "alpha=0/day", "alpha=-5/day", "alpha=0.001/day",
     "alpha=nan/day", "=5/day", "alpha=5/day,alpha=6/day"],
)  # fmt: skip
def test_a_bad_budget_stops_the_start_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("CLIENT_BUDGETS", raw)
    with pytest.raises(SettingsError, match="CLIENT_BUDGETS"):
        load_settings()


# --- admission ---------------------------------------------------------------------------------


def test_a_submit_reserves_its_worst_case_and_the_usage_shows_it(budgeted):
    assert budget_of(budgeted)["reserved"] == 0
    assert post_job_in_app(budgeted, job_body()).status_code == 202

    budget = budget_of(budgeted)
    assert budget["reserved"] == pytest.approx(worst_case_usd())
    assert budget["spent"] == 0
    assert budget["limit"] == BUDGET_USD and budget["window"] == "day"
    assert budget["remaining"] == pytest.approx(BUDGET_USD - worst_case_usd())
    tomorrow = datetime.now(UTC).date().toordinal() + 1
    assert datetime.fromisoformat(budget["resets_at"].replace("Z", "+00:00")).date().toordinal() == tomorrow
    assert budget_of(budgeted, BOB) is None  # bob has no budget


def test_a_submit_past_the_budget_is_a_429_that_writes_and_counts_nothing(budgeted, redis_conn):
    fits = int(BUDGET_USD // worst_case_usd())
    assert 1 <= fits < 5  # the rate limit (5/minute) is not what refuses here
    for _ in range(fits):
        assert post_job_in_app(budgeted, job_body()).status_code == 202
    before = {key: redis_conn.dump(key) for key in redis_conn.keys("*")}

    refused = post_job_in_app(budgeted, job_body())

    body = assert_error_shape(refused, 429)
    assert body["errors"]["type"] == "budget_exceeded"
    assert "CLIENT_BUDGETS" in body["message"] and "0.05 USD per day" in body["message"]
    assert "spent" in body["message"] and "reserved" in body["message"]
    assert body["errors"]["reserved"] == pytest.approx(fits * worst_case_usd())
    until_midnight = 86400 - (time.time() % 86400)
    assert abs(int(refused.headers["Retry-After"]) - until_midnight) <= 2
    # Nothing written, nothing counted: no job, no index entry, no metric, no rate-limit hit.
    assert {key: redis_conn.dump(key) for key in redis_conn.keys("*")} == before
    # The rate limit did not count it: with 5/minute, the refused submit left room for the others.
    assert post_job_in_app(budgeted, job_body(), BOB).status_code == 202


def test_another_client_is_not_affected(budgeted):
    while post_job_in_app(budgeted, job_body()).status_code == 202:
        pass
    for _ in range(4):
        assert post_job_in_app(budgeted, job_body(), BOB).status_code == 202


def test_a_model_without_a_price_is_refused_for_a_budgeted_client_only(budgeted):
    body = job_body(model="claude-sonnet-4-0-unknown")
    refused = assert_error_shape(post_job_in_app(budgeted, body), 422)
    assert "no price" in refused["message"] and "budget" in refused["message"]
    assert post_job_in_app(budgeted, body, BOB).status_code == 202


def test_a_batch_reserves_for_every_job_or_is_refused_whole(budgeted, redis_conn):
    two = {"jobs": [job_body(), job_body("another")]}
    assert budgeted.post("/v1/batches", json=two, headers=ALICE).status_code == 202
    assert budget_of(budgeted)["reserved"] == pytest.approx(worst_case_usd() + worst_case_usd("another"))

    jobs_before = redis_conn.keys("rq:job:*")
    too_many = {"jobs": [job_body() for _ in range(int(BUDGET_USD // worst_case_usd()))]}
    refused = assert_error_shape(budgeted.post("/v1/batches", json=too_many, headers=ALICE), 429)
    assert refused["errors"]["type"] == "budget_exceeded"
    assert redis_conn.keys("rq:job:*") == jobs_before


def test_a_canceled_queued_job_releases_its_reservation_and_a_retry_reserves_again(budgeted):
    job = post_job_in_app(budgeted, job_body()).json
    assert budgeted.post(f"/v1/jobs/{job['id']}/cancel", headers=ALICE).status_code == 200
    assert budget_of(budgeted)["reserved"] == 0

    assert budgeted.post(f"/v1/jobs/{job['id']}/retry", headers=ALICE).status_code == 202
    assert budget_of(budgeted)["reserved"] == pytest.approx(worst_case_usd())
    # A retry refused (it is queued, not ended) holds nothing.
    assert budgeted.post(f"/v1/jobs/{job['id']}/retry", headers=ALICE).status_code == 409
    assert budget_of(budgeted)["reserved"] == pytest.approx(worst_case_usd())


def test_the_clean_up_releases_the_reservations_of_jobs_gone_unseen(budgeted, redis_conn):
    kept = post_job_in_app(budgeted, job_body()).json
    gone = post_job_in_app(budgeted, job_body()).json
    Job.fetch(gone["id"], connection=redis_conn, serializer=SERIALIZER).delete()  # an operator deleted it

    assert release_lost_reservations(redis_conn) == 1
    assert budget_of(budgeted)["reserved"] == pytest.approx(worst_case_usd())
    assert redis_conn.hexists("llmjobs:budget:alice:reserved", kept["id"])


def test_metrics_show_each_budgeted_clients_share(budgeted):
    post_job_in_app(budgeted, job_body())
    samples = samples_of(budgeted.get("/metrics").text)
    committed = value(samples, "llmjobs_budget_committed_ratio", client="alice", window="day")
    assert committed == pytest.approx(worst_case_usd() / BUDGET_USD)
    assert value(samples, "llmjobs_budget_spent_ratio", client="alice", window="day") == 0
    assert ("llmjobs_budget_spent_ratio", (("client", "bob"), ("window", "day"))) not in samples


def test_the_worst_case_bounds_the_stored_request(budgeted, redis_conn):
    """The reservation is computed from the request as stored, whatever form it came in."""
    body = {"messages": [{"role": "user", "content": "é" * 500}], "max_tokens": 10}
    job = post_job_in_app(budgeted, body).json
    stored = Job.fetch(job["id"], connection=redis_conn, serializer=SERIALIZER).kwargs["request"]
    content_bytes = len(json.dumps(stored["messages"], ensure_ascii=False).encode())
    assert content_bytes >= 1000  # "é" is two bytes of UTF-8: the bound counts bytes, not characters
    reserved = int(redis_conn.hget("llmjobs:budget:alice:reserved", job["id"]))
    assert reserved >= round((content_bytes * 2 + 10 * 10) / 1_000_000 * 1_000_000)  # sonnet-5-5: 2 in, 10 out


def test_a_document_job_reserves_for_every_call_of_its_analyses(budgeted, redis_conn):
    text = ("A paragraph of the report. " * 4 + "\n\n") * 3
    body = {"document": {"filename": "report.txt", "data": base64.b64encode(text.encode()).decode()},
            "analyses": ["summary", "topics"], "max_tokens": 200, "model": "claude-haiku-4-5"}  # fmt: skip
    response = budgeted.post("/v1/documents", json=body, headers=ALICE)
    assert response.status_code == 202, response.text

    stored = Job.fetch(response.json["id"], connection=redis_conn, serializer=SERIALIZER).kwargs["request"]
    expected = document_job_usd(
        stored, media_type="text/plain", file_bytes=len(text.encode()), chunk_tokens=50_000, prices={}
    )
    assert budget_of(budgeted)["reserved"] == pytest.approx(math.ceil(expected * 1e6) / 1e6)
    # Summary and topics over the whole text, topics' repair, 200 tokens out for each of the three
    # calls; input at Claude Haiku 4.5's 1 h cache write ($2/MTok), output at $5/MTok.
    assert expected >= (3 * 3 * len(text.encode()) * 2 + 3 * 200 * 5) / 1_000_000


@pytest.mark.parametrize("room", [True, False])
def test_a_run_requeued_behind_the_apis_back_reserves_again_or_fails(budgeted, redis_conn, room):
    """rq-dashboard's requeue of a failed job starts a new run in the worker (start_attempt)."""
    job_id = post_job_in_app(budgeted, job_body()).json["id"]
    release_jobs(redis_conn, "alice", {job_id: None})  # as its end did
    redis_conn.set(f"llmjobs:announced:{job_id}", "failed")  # it ended failed; an operator requeued it
    if not room:
        today = datetime.now(UTC).date()
        redis_conn.hset(f"llmjobs:budget:alice:spent:{today:%Y-%m}", today.isoformat(), 49_000_000)
    job = Job.fetch(job_id, connection=redis_conn, serializer=SERIALIZER)

    if room:
        start_attempt(job)
        assert budget_of(budgeted)["reserved"] == pytest.approx(worst_case_usd())
    else:
        with pytest.raises(RunRefused, match="spend budget"):
            start_attempt(job)
        assert budget_of(budgeted)["reserved"] == 0
        assert JobRecord(job).error["type"] == "budget_exceeded"
