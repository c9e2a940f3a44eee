"""Batches: many jobs in one request, validated together, queued in one MULTI/EXEC, and
followed as a whole (counts by status, one webhook when every job has ended)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
import requests
from standardwebhooks import Webhook

from service.app import create_app
from service.jobs.storage.keys import batch_key
from tests.support.concurrency import all_at_once
from tests.support.jobs import get, post_job_in_app
from tests.support.keys import ALICE, BOB
from tests.support.prometheus import scrape, value
from tests.support.redis_calls import counting_redis_calls
from tests.support.waiting import wait_for
from tests.support.webhooks import SECRET, WEBHOOKS_ON

ZERO = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "canceled": 0}


def post_batch(api: str, body: dict, headers: dict = ALICE) -> requests.Response:
    return requests.post(f"{api}/v1/batches", json=body, headers=headers, timeout=10)


def get_batch(api: str, batch_id: str, headers: dict = ALICE) -> dict:
    response = requests.get(f"{api}/v1/batches/{batch_id}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until_done(api: str, batch_id: str, timeout: float = 20) -> dict:
    return wait_for(
        lambda: (batch := get_batch(api, batch_id))["status"] == "done" and batch, timeout, what=f"batch {batch_id}"
    )


def test_a_batch_of_mixed_outcomes_is_counted_until_done(start_api, start_worker, redis_conn):
    api = start_api()
    prompts = ["a [[fake: tokens=3]]", "b [[fake: tokens=3]]", "c [[fake: error=400]]", "d [[fake: tokens=3]]"]
    jobs = [{"prompt": p, "metadata": {"i": str(i)}} for i, p in enumerate(prompts)]
    jobs[1]["priority"] = "high"
    response = post_batch(api, {"jobs": jobs, "metadata": {"run": "r1"}})
    assert response.status_code == 202, response.text
    batch = response.json()
    assert response.headers["Location"] == f"/v1/batches/{batch['id']}" == batch["links"]["self"]
    assert batch["status"] == "running" and batch["finished_at"] is None and batch["webhook"] is None
    assert batch["counts"] == {**ZERO, "queued": 4}
    assert batch["metadata"] == {"run": "r1"}
    ids = batch["job_ids"]
    assert batch["links"]["jobs"] == [f"/v1/jobs/{job_id}" for job_id in ids]
    # in request order, each a job of the client's own, on its own priority's queue
    assert [get(api, job_id)["metadata"] for job_id in ids] == [{"i": str(i)} for i in range(4)]
    assert [get(api, job_id)["priority"] for job_id in ids] == ["default", "high", "default", "default"]
    submitted = scrape(api)
    assert value(submitted, "llmjobs_jobs_submitted_total", queue="default") == 3
    assert value(submitted, "llmjobs_jobs_submitted_total", queue="high") == 1
    assert requests.get(f"{api}/v1/jobs/{ids[0]}", headers=BOB, timeout=10).status_code == 404

    canceled = requests.post(f"{api}/v1/jobs/{ids[3]}/cancel", headers=ALICE, timeout=10)
    assert canceled.status_code == 200, canceled.text
    assert get_batch(api, batch["id"])["counts"] == {**ZERO, "queued": 3, "canceled": 1}

    start_worker()
    done = wait_until_done(api, batch["id"])
    assert done["counts"] == {**ZERO, "succeeded": 2, "failed": 1, "canceled": 1}
    assert done["finished_at"] and done["finished_at"] >= done["created_at"]
    assert done["job_ids"] == ids
    assert [get(api, job_id)["status"] for job_id in ids] == ["succeeded", "succeeded", "failed", "canceled"]

    # A re-run of one of its jobs does not reopen the batch, nor count that job twice.
    rerun = requests.post(f"{api}/v1/jobs/{ids[2]}/retry", headers=ALICE, timeout=10)
    assert rerun.status_code == 202, rerun.text
    wait_for(lambda: (j := get(api, ids[2]))["status"] == "failed" and j["attempts"] == 2, what="the re-run to end")
    again = get_batch(api, batch["id"])
    assert (again["status"], again["finished_at"]) == ("done", done["finished_at"])
    assert again["counts"] == done["counts"]
    assert int(redis_conn.hget(batch_key(batch["id"]), "remaining")) == 0


@pytest.fixture
def small_batches(service_env, monkeypatch):
    """The app in-process with MAX_BATCH_JOBS=3."""
    for name in ("REDIS_URL", "API_KEYS", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.setenv(name, service_env[name])
    monkeypatch.setenv("MAX_BATCH_JOBS", "3")
    return create_app().test_client()


def nothing_enqueued(connection: redis.Redis) -> bool:
    queued = sum(connection.llen(f"rq:queue:{name}") for name in ("high", "default", "low"))
    return queued == 0 and not connection.keys("rq:job:*") and not connection.keys("llmjobs:batch:*")


def test_one_invalid_job_refuses_the_whole_batch_naming_its_index(small_batches, redis_conn):
    body = {"jobs": [{"prompt": "ok"}, {"prompt": "ok", "max_tokens": 0}, {"prompt": "ok", "priority": "urgent"}]}
    response = small_batches.post("/v1/batches", json=body, headers=ALICE)
    assert response.status_code == 422, response.text
    error = response.get_json()
    assert error["code"] == 422 and error["status"] == "Unprocessable Entity"
    assert set(error["errors"]["json"]["jobs"]) == {"1", "2"}
    assert "max_tokens" in error["errors"]["json"]["jobs"]["1"]
    assert "priority" in error["errors"]["json"]["jobs"]["2"]
    assert "jobs.1.max_tokens" in error["message"]
    assert nothing_enqueued(redis_conn)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"jobs": [{"prompt": "hi"}] * 4}, "jobs", id="over-MAX_BATCH_JOBS"),
        pytest.param({"jobs": []}, "jobs", id="empty"),
        pytest.param({}, "jobs", id="no-jobs"),
        pytest.param({"jobs": [{"prompt": "hi"}], "color": "red"}, "color", id="unknown-field"),
        pytest.param({"jobs": [{"prompt": "hi", "color": "red"}]}, "jobs", id="unknown-job-field"),
        pytest.param({"jobs": [{"prompt": "hi"}], "callback_url": "http://127.0.0.1/x"}, "callback_url", id="hook"),
        pytest.param({"jobs": [{"prompt": "hi"}], "metadata": {"k": 1}}, "metadata", id="metadata"),
    ],
)
def test_bad_batches_are_422_and_enqueue_nothing(small_batches, redis_conn, body, field):
    response = small_batches.post("/v1/batches", json=body, headers=ALICE)
    assert response.status_code == 422, response.text
    assert field in response.get_json()["errors"]["json"]
    assert nothing_enqueued(redis_conn)


def test_a_batch_of_max_size_is_accepted_and_only_its_owner_sees_it(small_batches):
    response = small_batches.post("/v1/batches", json={"jobs": [{"prompt": "hi"}] * 3}, headers=ALICE)
    assert response.status_code == 202, response.text
    batch_id = response.get_json()["id"]
    assert small_batches.get(f"/v1/batches/{batch_id}", headers=ALICE).status_code == 200
    for path, headers in [(batch_id, BOB), ("0" * 32, ALICE), ("not-an-id", ALICE)]:
        missing = small_batches.get(f"/v1/batches/{path}", headers=headers)
        assert missing.status_code == 404 and missing.get_json()["code"] == 404
    assert small_batches.get(f"/v1/batches/{batch_id}").status_code == 401


def test_a_job_record_rq_cannot_restore_never_fails_its_batch(client, redis_conn):
    response = client.post("/v1/batches", json={"jobs": [{"prompt": "a"}, {"prompt": "b"}]}, headers=ALICE)
    batch = response.get_json()
    redis_conn.hdel(f"rq:job:{batch['job_ids'][0]}", "data")  # RQ's restore raises on it

    read = client.get(f"/v1/batches/{batch['id']}", headers=ALICE)

    assert read.status_code == 200, read.text
    assert read.get_json()["counts"]["queued"] == 1  # the unreadable job is not counted, as an expired one


def test_a_batch_is_admitted_and_enqueued_in_one_round_trip(client, redis_conn, monkeypatch):
    body = {"jobs": [{"prompt": "a"}, {"prompt": "b", "priority": "high"}, {"prompt": "c", "priority": "low"}]}
    assert client.post("/v1/batches", json=body, headers=ALICE).status_code == 202  # warm-up: server version
    with counting_redis_calls() as calls:
        response = client.post("/v1/batches", json=body, headers=ALICE)

    assert response.status_code == 202, response.text
    # One script checks the limit and each target queue's depth, then writes every job, the
    # client index and the batch record (service.jobs.storage.admission).
    assert calls == {"pipeline": 0, "command": ["EVALSHA"]}
    assert redis_conn.llen("rq:queue:default") == 2 and redis_conn.llen("rq:queue:high") == 2


def test_the_callback_fires_once_when_the_whole_batch_is_done(start_api, start_worker, receiver):
    api = start_api(**WEBHOOKS_ON)
    start_worker(**WEBHOOKS_ON)
    start_worker("webhooks", **WEBHOOKS_ON)
    jobs = [{"prompt": "a [[fake: tokens=3]]"}, {"prompt": "b [[fake: error=400]]"}, {"prompt": "c [[fake: tokens=5]]"}]
    response = post_batch(api, {"jobs": jobs, "callback_url": receiver.url})
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]

    hook = wait_for(
        lambda: (h := get_batch(api, batch_id)["webhook"]) and h["state"] == "delivered" and h,
        timeout=20,
        what="the batch's webhook to be delivered",
    )
    time.sleep(0.5)  # nothing else comes
    (delivery,) = receiver.deliveries
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    assert headers["webhook-id"] == hook["id"]
    payload = Webhook(SECRET).verify(delivery.body, headers)
    assert payload == json.loads(delivery.body)
    assert payload["type"] == "batch.done" and payload["timestamp"] == payload["data"]["finished_at"]
    body = payload["data"]
    assert body["id"] == batch_id and body["status"] == "done" and body["finished_at"]
    assert body["counts"] == {**ZERO, "succeeded": 2, "failed": 1}
    assert "webhook" not in body  # the state of the delivery carrying it would be "pending"
    assert (hook["attempts"], hook["last_status_code"], hook["url"]) == (1, 200, receiver.url)

    redelivered = requests.post(f"{api}/v1/batches/{batch_id}/webhook/redeliver", headers=ALICE, timeout=10)
    assert redelivered.status_code == 202, redelivered.text
    assert redelivered.json()["webhook"]["state"] == "pending"
    wait_for(lambda: len(receiver.deliveries) == 2, what="the redelivery")
    again = receiver.deliveries[1]
    assert {k.lower(): v for k, v in again.headers.items()}["webhook-id"] == hook["id"]  # receivers dedupe by it
    assert json.loads(again.body) == payload  # the batch as it is now: unchanged
    wait_for(lambda: get_batch(api, batch_id)["webhook"]["state"] == "delivered", what="the redelivery's state")
    other = requests.post(f"{api}/v1/batches/{batch_id}/webhook/redeliver", headers=BOB, timeout=10)
    assert other.status_code == 404  # another client's batch


def test_redeliver_needs_a_done_batch_with_a_callback(client):
    batch = client.post("/v1/batches", json={"jobs": [{"prompt": "a"}]}, headers=ALICE).get_json()
    response = client.post(f"/v1/batches/{batch['id']}/webhook/redeliver", headers=ALICE)
    assert response.status_code == 409 and "callback_url" in response.get_json()["message"]
    assert client.post("/v1/batches/nope/webhook/redeliver", headers=ALICE).status_code == 404


# --- Idempotency-Key ------------------------------------------------------------------------


def batch_ids(connection: redis.Redis) -> set[str]:
    return {key.decode().removeprefix("llmjobs:batch:") for key in connection.keys("llmjobs:batch:*")}


def post_keyed(client, body: dict, key: str) -> Any:
    """POST /v1/batches in-process, with an Idempotency-Key."""
    return client.post("/v1/batches", json=body, headers={**ALICE, "Idempotency-Key": key})


def test_the_same_key_and_body_give_the_first_batch_back_and_queue_nothing_more(client, redis_conn):
    body = {"jobs": [{"prompt": "a"}, {"prompt": "b", "priority": "high"}], "metadata": {"run": "r1"}}
    first = post_keyed(client, body, "nightly-2026-11-21")
    assert first.status_code == 202, first.text
    again = post_keyed(client, {**body, "jobs": [{"prompt": "a", "priority": "default"}, body["jobs"][1]]},
                       "nightly-2026-11-21")  # fmt: skip  # equal after validation defaults
    assert again.status_code == 200, again.text
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["job_ids"] == first.get_json()["job_ids"]
    assert again.headers["Location"] == first.headers["Location"]
    assert batch_ids(redis_conn) == {first.get_json()["id"]}
    assert len(redis_conn.keys("rq:job:*")) == 2


def test_the_same_key_with_another_body_or_used_for_a_job_is_409(client, redis_conn):
    assert post_keyed(client, {"jobs": [{"prompt": "a"}]}, "k1").status_code == 202
    conflict = post_keyed(client, {"jobs": [{"prompt": "b"}]}, "k1")
    assert conflict.status_code == 409 and "different request body" in conflict.get_json()["message"]
    job = post_job_in_app(client, {"prompt": "a"}, {**ALICE, "Idempotency-Key": "k2"})
    assert job.status_code == 202
    assert post_keyed(client, {"jobs": [{"prompt": "a"}]}, "k2").status_code == 409  # one key, one request
    assert len(batch_ids(redis_conn)) == 1 and len(redis_conn.keys("rq:job:*")) == 2


def test_concurrent_batches_with_one_key_make_one_batch(app, redis_conn):
    body = {"jobs": [{"prompt": "a"}, {"prompt": "b"}]}
    responses = all_at_once(8, lambda: post_keyed(app.test_client(), body, "once"))
    codes = sorted(response.status_code for response in responses)
    assert codes == [200] * 7 + [202], [r.get_data(as_text=True) for r in responses]
    assert batch_ids(redis_conn) == {response.get_json()["id"] for response in responses}
    assert len(batch_ids(redis_conn)) == 1
    assert redis_conn.llen("rq:queue:default") == 2
