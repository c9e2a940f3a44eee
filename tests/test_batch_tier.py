"""The batch tier (DESIGN §9) over real processes: the API, worker.py, Redis and the fake's
Message Batches API through the real SDK."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
import requests
from llmjobs import JobsClient

from service.jobs.running import provider_batches
from service.jobs.storage.keys import OPEN_PROVIDER_BATCHES_KEY, provider_call_key
from service.llm.pricing import cost_usd
from tests import documents
from tests.support.cli import run_cli
from tests.support.error_shape import assert_error_shape
from tests.support.event_stream import read_stream
from tests.support.fake_server import directive
from tests.support.jobs import get, post_job, submit, wait_until_finished
from tests.support.keys import ALICE, ALICE_KEY
from tests.support.waiting import wait_for
from tests.support.webhooks import WEBHOOKS_ON, webhook_of
from tests.test_readme_params import body_of

# Collect for half a second, poll every 0.3 s: the suite's waits stay short.
FAST_BATCHES = {"BATCH_COLLECT_S": "0.5", "BATCH_POLL_S": "0.3"}
QUICK = directive(batch_delay_ms=300)
MODEL = "claude-haiku-4-5"


def stats(fake: str) -> dict[str, Any]:
    return requests.get(f"{fake}/_stats", timeout=5).json()


def batch_job(text: str, **fields: Any) -> dict[str, Any]:
    return {"prompt": f"{text} {uuid.uuid4().hex[:8]}", "model": MODEL, "tier": "batch", **fields}


def usage_of(api: str) -> dict[str, Any]:
    return requests.get(f"{api}/v1/usage", headers=ALICE, timeout=10).json()["total"]


def finished(api: str, job_id: str) -> dict[str, Any]:
    return wait_until_finished(api, job_id, timeout=60)


# --- the API ----------------------------------------------------------------------------------


def test_tier_is_shown_and_bad_tiers_and_timeouts_are_422s_that_store_nothing(start_api, redis_conn):
    api = start_api(BATCH_COLLECT_S="30")
    standard = submit(api, {"prompt": "hi"})
    assert standard["tier"] == "standard" and standard["provider_batch"] is None
    batch = submit(api, {"prompt": "hi", "tier": "batch", "timeout_s": 86_430})
    assert batch["tier"] == "batch" and batch["status"] == "queued" and batch["provider_batch"] is None
    assert redis_conn.lrange("rq:queue:batch", 0, -1) == [batch["id"].encode()]
    stored = redis_conn.dbsize()
    refused = [
        {"prompt": "hi", "tier": "cheap"},
        {"prompt": "hi", "tier": None},
        {"prompt": "hi", "tier": "batch", "timeout_s": 86_431},  # past 24 h + BATCH_COLLECT_S
        {"prompt": "hi", "timeout_s": 601},  # a standard job's cap is unchanged
        {"params": {"messages": [{"role": "user", "content": "hi"}], "betas": ["x-1"]}, "tier": "batch"},
    ]
    for body in refused:
        response = post_job(api, body)
        error = assert_error_shape(response, 422)
        assert set(error["errors"]["json"]) & {"tier", "timeout_s"}, error
    response = requests.post(f"{api}/v1/batches", json={"jobs": [{"prompt": "a", "tier": "later"}]}, headers=ALICE)
    assert_error_shape(response, 422)
    assert redis_conn.dbsize() == stored


# --- collect, send, poll, fan out ---------------------------------------------------------------


def test_batch_tier_jobs_go_out_in_one_provider_batch_at_half_price(start_api, start_worker, fake_anthropic):
    api = start_api(**FAST_BATCHES)
    start_worker(**FAST_BATCHES)
    before = stats(fake_anthropic)
    jobs = [submit(api, batch_job(f"job {i} {directive(batch_delay_ms=1500, tokens=12)}")) for i in range(3)]
    running = wait_for(lambda: (j := get(api, jobs[0]["id"]))["status"] == "running" and j, timeout=30)
    assert running["provider_batch"]["id"].startswith("msgbatch_") and running["provider_batch"]["submitted_at"]
    assert running["attempts"] == 1
    done = [finished(api, job["id"]) for job in jobs]
    after = stats(fake_anthropic)
    assert after["batch_creates"] == before["batch_creates"] + 1
    assert after["batch_requests"] == before["batch_requests"] + 3
    assert after["messages_calls"] == before["messages_calls"]
    for job in done:
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert result["usage"]["service_tier"] == "batch" and result["usage"]["output_tokens"] == 12
        assert len(result["text"].split()) == 12 and result["message"]["content"][0]["text"] == result["text"]
        standard_cost = cost_usd(MODEL, {**result["usage"], "service_tier": "standard"})
        assert result["cost_usd"] == pytest.approx(standard_cost / 2)
        assert job["provider_batch"] is None and job["attempts"] == 1
    usage = requests.get(f"{api}/v1/usage", headers=ALICE, timeout=10).json()
    assert usage["total"]["jobs"] >= 3


def test_a_batch_tier_jobs_end_is_published_as_its_webhook_and_its_stream_end(start_api, start_worker, receiver):
    env = {**FAST_BATCHES, **WEBHOOKS_ON}
    api = start_api(**env)
    start_worker(**env)
    job = submit(api, batch_job(f"hooked {QUICK}", callback_url=receiver.url))
    events = read_stream(api, job["id"])  # until the server ends it, after the end event
    assert events[-1].event == "succeeded" and events[-1].data["tier"] == "batch"
    hook = webhook_of(api, job["id"], "delivered")
    [delivery] = [d for d in receiver.deliveries if json.loads(d.body)["data"]["id"] == job["id"]]
    assert json.loads(delivery.body)["data"]["result"]["usage"]["service_tier"] == "batch" and hook["attempts"] == 1


def test_errors_fail_retry_in_a_later_batch_or_expire(start_api, start_worker, fake_anthropic):
    env = {**FAST_BATCHES, "LLM_MAX_ATTEMPTS": "2"}
    api = start_api(**env)
    start_worker(**env)
    before = stats(fake_anthropic)
    final = submit(api, batch_job(f"bad {directive(error=400, batch_delay_ms=300)}"))
    flaky = submit(api, batch_job(f"busy {directive(error=529, fail_times=1, key=uuid.uuid4().hex)} {QUICK}"))
    late = submit(api, batch_job(f"late {directive(batch_expire=1, batch_delay_ms=300)}"))
    failed = finished(api, final["id"])
    assert failed["status"] == "failed" and failed["error"]["type"] == "invalid_request_error"
    assert failed["attempts"] == 1
    retried = finished(api, flaky["id"])
    assert retried["status"] == "succeeded" and retried["attempts"] == 2, retried
    expired = finished(api, late["id"])
    assert expired["status"] == "failed" and expired["error"]["type"] == "expired" and expired["attempts"] == 2
    assert stats(fake_anthropic)["batch_creates"] - before["batch_creates"] == 2  # the first, then the retries
    assert stats(fake_anthropic)["messages_calls"] == before["messages_calls"]


def test_a_refused_create_keeps_its_jobs_queued_until_the_provider_takes_them(start_api, start_worker, fake_anthropic):
    api = start_api(**FAST_BATCHES)
    start_worker(**FAST_BATCHES)
    before = stats(fake_anthropic)
    job = submit(api, batch_job(f"outage {directive(create_error=503, fail_times=2, key=uuid.uuid4().hex)} {QUICK}"))
    done = finished(api, job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert stats(fake_anthropic)["batch_creates"] == before["batch_creates"] + 1


# --- cancel ----------------------------------------------------------------------------------------


def test_cancel_at_any_time_and_a_batch_of_canceled_jobs_is_canceled(
    start_api, start_worker, fake_anthropic, redis_conn
):
    api = start_api(**FAST_BATCHES)
    start_worker(**FAST_BATCHES)
    before = stats(fake_anthropic)
    slow = directive(batch_delay_ms=60_000)
    job = submit(api, batch_job(f"never mind {slow}"))
    wait_for(lambda: get(api, job["id"])["status"] == "running", timeout=30)
    response = requests.post(f"{api}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    wait_for(lambda: stats(fake_anthropic)["batch_cancels"] == before["batch_cancels"] + 1, timeout=30)
    wait_for(lambda: redis_conn.zcard(OPEN_PROVIDER_BATCHES_KEY) == 0, timeout=30, what="the record closed")
    assert get(api, job["id"])["status"] == "canceled"


def test_a_job_past_its_timeout_fails_while_its_provider_batch_runs(start_api, start_worker, fake_anthropic):
    api = start_api(**FAST_BATCHES)
    start_worker(**FAST_BATCHES)
    before = stats(fake_anthropic)
    job = submit(api, batch_job(f"in a hurry {directive(batch_delay_ms=60_000)}", timeout_s=3))
    done = finished(api, job["id"])
    assert done["status"] == "failed" and done["error"]["type"] == "timeout", done
    assert done["attempts"] == 1  # it was sent, and ended at its deadline
    wait_for(lambda: stats(fake_anthropic)["batch_cancels"] == before["batch_cancels"] + 1, timeout=30)


def test_a_canceled_job_stays_canceled_when_its_result_comes(start_api, start_worker, fake_anthropic):
    api = start_api(**FAST_BATCHES)
    start_worker(**FAST_BATCHES)
    slow = directive(batch_delay_ms=3000)
    kept, dropped = (submit(api, batch_job(f"{name} {slow}")) for name in ("kept", "dropped"))
    wait_for(lambda: get(api, dropped["id"])["status"] == "running", timeout=30)
    assert requests.post(f"{api}/v1/jobs/{dropped['id']}/cancel", headers=ALICE, timeout=10).status_code == 200
    assert finished(api, kept["id"])["status"] == "succeeded"
    ended = get(api, dropped["id"])
    assert ended["status"] == "canceled" and ended["result"] is None
    # What the provider billed for the dropped result counts in the usage (not as a job).
    kept_tokens = get(api, kept["id"])["result"]["usage"]["output_tokens"]
    wait_for(lambda: usage_of(api)["output_tokens"] > kept_tokens, timeout=30, what="the dropped result's usage")
    assert usage_of(api)["jobs"] == 1
    assert get(api, dropped["id"]) == ended


def test_a_document_calls_first_result_wins_and_a_call_no_longer_waited_for_gets_none(redis_conn):
    # A call may come back twice: from two provider batches a crashed create may have
    # made, or read again after a worker died while reading its batch.
    call_id = provider_batches.queue_call(redis_conn, "a-job", {"model": MODEL}, ttl_s=60)
    assert provider_batches.answer_call(redis_conn, call_id, {"message": {"id": "first"}})
    assert not provider_batches.answer_call(redis_conn, call_id, {"error": {"type": "api_error"}})
    assert provider_batches.call_answer(redis_conn, call_id) == {"message": {"id": "first"}}
    provider_batches.drop_call(redis_conn, call_id)  # its run read it
    assert not provider_batches.answer_call(redis_conn, call_id, {"message": {"id": "late"}})
    assert not redis_conn.exists(provider_call_key(call_id))


# --- the Python client and the CLI -------------------------------------------------------------------


def test_client_and_cli_submit_batch_tier_jobs(start_api, start_worker):
    api = start_api(**FAST_BATCHES)
    start_worker(**FAST_BATCHES)
    client = JobsClient(api, ALICE_KEY)
    job = client.submit(f"by the client {QUICK} {uuid.uuid4().hex}", tier="batch", model=MODEL)
    assert job.tier == "batch" and job.status == "queued"
    done = client.wait(job.id, timeout=60)
    assert done.status == "succeeded" and done.raw["result"]["usage"]["service_tier"] == "batch"

    ran = run_cli("submit", f"by the CLI {QUICK} {uuid.uuid4().hex}", "--tier", "batch", "--wait", "--json", url=api)
    assert ran.returncode == 0, ran.stderr
    job_json = json.loads(ran.stdout)
    assert job_json["tier"] == "batch" and job_json["status"] == "succeeded"
    refused = run_cli("submit", "x", "--tier", "cheap", url=api)
    assert refused.returncode != 0 and "--tier" in refused.stderr


def test_the_readme_example_runs_at_the_batch_price(start_api, start_worker):
    api = start_api(**FAST_BATCHES)
    start_worker(**FAST_BATCHES)
    body = body_of("batch-tier")
    assert body["tier"] == "batch"
    done = finished(api, submit(api, body)["id"])
    assert done["status"] == "succeeded" and done["metadata"] == {"run": "nightly"}
    usage = done["result"]["usage"]
    assert usage["service_tier"] == "batch"
    assert done["result"]["cost_usd"] == pytest.approx(cost_usd(done["model"], {**usage, "service_tier": None}) / 2)


# --- POST /v1/batches and document jobs -------------------------------------------------------------


def test_a_batch_of_batch_tier_jobs_and_a_batch_tier_document_job(start_api, start_worker, fake_anthropic):
    api = start_api(**FAST_BATCHES)
    start_worker(**FAST_BATCHES)
    before = stats(fake_anthropic)
    jobs = [batch_job(f"in a batch {i} {QUICK}") for i in range(3)]
    response = requests.post(f"{api}/v1/batches", json={"jobs": jobs}, headers=ALICE, timeout=10)
    assert response.status_code == 202, response.text
    for job_id in response.json()["job_ids"]:
        done = finished(api, job_id)
        assert done["status"] == "succeeded" and done["tier"] == "batch"

    data = documents.docx(["The invoice PDF is blank.", "The customer asks for a refund."])
    options = {"tier": "batch", "model": MODEL, "analyses": ["summary", "sentiment"]}
    upload = requests.post(
        f"{api}/v1/documents",
        files={"file": ("ticket.docx", io.BytesIO(data)), "options": (None, json.dumps(options))},
        headers=ALICE,
        timeout=30,
    )
    assert upload.status_code == 202, upload.text
    document = upload.json()
    assert document["tier"] == "batch" and document["status"] == "queued"
    done = finished(api, document["id"])
    assert done["status"] == "succeeded", done
    for step in done["steps"][1:]:  # its cost at the batch price (the system prompt's cache writes are 5 min ones)
        written = {"ephemeral_5m_input_tokens": step["usage"].get("cache_creation_input_tokens", 0)}
        standard = cost_usd(MODEL, {**step["usage"], "cache_creation": written})
        assert step["status"] == "succeeded" and step["cost_usd"] == pytest.approx(standard / 2)
    after = stats(fake_anthropic)
    assert after["messages_calls"] == before["messages_calls"]  # every call went in a provider batch
    assert after["batch_requests"] - before["batch_requests"] == 3 + 2
