"""Signed webhooks, end to end: a real receiver HTTP server, the API and workers as processes."""

from __future__ import annotations

import base64
import json
import secrets
import time

import pytest
import requests
from standardwebhooks import Webhook

from service.app import create_app
from service.client import verify_webhook
from tests.conftest import ALICE, kill_tree, scrape, wait_for
from tests.test_end_to_end import get, submit, wait_until_finished

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
WEBHOOKS_ON = {"WEBHOOK_SECRET": SECRET, "CALLBACK_ALLOWED_NETWORKS": "127.0.0.1/32", "WEBHOOK_RETRY_SCHEDULE": "1,1,1"}


# The bare worker serves webhooks too: these tests give deliveries a worker of their own.
LLM_QUEUES = ("high", "default", "low")


@pytest.fixture
def stack(start_api, start_worker):
    api = start_api(**WEBHOOKS_ON)
    start_worker(*LLM_QUEUES, **WEBHOOKS_ON)
    start_worker("webhooks", **WEBHOOKS_ON)
    return api


def deliveries_counted(api: str) -> dict[str, float]:
    """/metrics' job webhook delivery attempts by outcome."""
    return {
        dict(labels)["outcome"]: count
        for (name, labels), count in scrape(api).items()
        if name == "llmjobs_webhook_deliveries_total" and dict(labels)["kind"] == "job"
    }


def webhook_of(api: str, job_id: str, state: str, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (hook := get(api, job_id)["webhook"]) and hook["state"] == state and hook, timeout=timeout,
        what=f"the webhook to be {state}",
    )  # fmt: skip


def test_the_end_of_a_job_is_posted_once_signed_per_standard_webhooks(stack, receiver):
    job = submit(stack, {"prompt": "hi [[fake: tokens=5]]", "callback_url": receiver.url})
    hook = webhook_of(stack, job["id"], "delivered")

    (delivery,) = receiver.deliveries
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    assert headers["webhook-id"] == hook["id"]
    assert headers["webhook-signature"].startswith("v1,")
    assert abs(int(headers["webhook-timestamp"]) - delivery.at) < 30
    # verified with the reference implementation, and with our own client's verifier
    body = Webhook(SECRET).verify(delivery.body, headers)
    assert verify_webhook(delivery.body, headers, SECRET) == body
    assert body["id"] == job["id"] and body["status"] == "succeeded" and body["result"]["text"]
    assert (hook["attempts"], hook["last_status_code"], hook["url"]) == (1, 200, receiver.url)
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(delivery.body.replace(b"succeeded", b"failed"), headers)


def test_receiver_failures_are_retried_with_the_same_id_honouring_retry_after(stack, receiver):
    receiver.script = [(500, {}, 0.0), (503, {"Retry-After": "3"}, 0.0)]
    job = submit(stack, {"prompt": "hi [[fake: tokens=2]]", "callback_url": receiver.url})
    hook = webhook_of(stack, job["id"], "delivered")

    assert [d.headers["webhook-id"] for d in receiver.deliveries] == [hook["id"]] * 3
    assert len({d.headers["webhook-timestamp"] for d in receiver.deliveries[1:]} | {"x"}) >= 2
    gaps = [later.at - earlier.at for earlier, later in zip(receiver.deliveries, receiver.deliveries[1:], strict=False)]
    assert gaps[1] >= 3  # the receiver's Retry-After, over the 1 s schedule
    assert (hook["attempts"], hook["last_status_code"]) == (3, 200)


def test_410_stops_retries(stack, receiver):
    receiver.script = [(410, {}, 0.0)]
    job = submit(stack, {"prompt": "hi [[fake: tokens=2]]", "callback_url": receiver.url})
    hook = webhook_of(stack, job["id"], "gone")
    time.sleep(3)  # longer than the retry schedule's first wait: nothing more comes
    assert len(receiver.deliveries) == 1 and hook["last_status_code"] == 410
    assert deliveries_counted(stack) == {"gone": 1}


def test_a_receiver_that_keeps_failing_is_marked_failed_after_the_schedule(stack, receiver):
    receiver.script = [(500, {}, 0.0)] * 10
    job = submit(stack, {"prompt": "hi [[fake: tokens=2]]", "callback_url": receiver.url})
    hook = webhook_of(stack, job["id"], "failed")
    assert len(receiver.deliveries) == 4  # the first try and the 3 of WEBHOOK_RETRY_SCHEDULE
    assert (hook["attempts"], hook["last_status_code"]) == (4, 500)
    assert deliveries_counted(stack) == {"retrying": 3, "failed": 1}


@pytest.mark.parametrize("outcome", ["failed", "canceled"])
def test_failed_and_canceled_jobs_get_their_webhook_too(stack, receiver, outcome):
    prompt = "bad [[fake: error=400]]" if outcome == "failed" else "slow [[fake: tokens=300 chunk_delay_ms=50]]"
    job = submit(stack, {"prompt": prompt, "callback_url": receiver.url})
    if outcome == "canceled":
        wait_for(lambda: get(stack, job["id"])["status"] == "running", what="the job to run")
        requests.post(f"{stack}/v1/jobs/{job['id']}/cancel", headers=ALICE, timeout=10)
    webhook_of(stack, job["id"], "delivered")
    (delivery,) = receiver.deliveries
    assert json.loads(delivery.body)["status"] == outcome


def test_the_address_is_checked_again_at_delivery(start_api, start_worker, receiver):
    api = start_api(**WEBHOOKS_ON)  # the API allows 127.0.0.1 ...
    start_worker(*LLM_QUEUES, **WEBHOOKS_ON)
    start_worker("webhooks", **{**WEBHOOKS_ON, "CALLBACK_ALLOWED_NETWORKS": ""})  # ... the sender no longer does
    job = submit(api, {"prompt": "hi [[fake: tokens=2]]", "callback_url": receiver.url})
    hook = webhook_of(api, job["id"], "failed")
    assert receiver.deliveries == []
    assert "internal address" in hook["last_error"] and hook["attempts"] == 1


def test_redeliver_sends_the_same_webhook_again(stack, receiver):
    job = submit(stack, {"prompt": "hi [[fake: tokens=2]]", "callback_url": receiver.url})
    first = webhook_of(stack, job["id"], "delivered")
    response = requests.post(f"{stack}/v1/jobs/{job['id']}/webhook/redeliver", headers=ALICE, timeout=10)
    assert response.status_code == 202
    wait_for(lambda: len(receiver.deliveries) == 2, what="the second delivery")
    assert receiver.deliveries[1].headers["webhook-id"] == first["id"]
    plain = submit(stack, {"prompt": "no callback [[fake: tokens=2]]"})
    wait_until_finished(stack, plain["id"])
    assert requests.post(f"{stack}/v1/jobs/{plain['id']}/webhook/redeliver", headers=ALICE).status_code == 409


def test_a_slow_receiver_does_not_hold_an_llm_worker(stack, receiver):
    receiver.script = [(200, {}, 6.0)]
    first = submit(stack, {"prompt": "hi [[fake: tokens=2]]", "callback_url": receiver.url})
    wait_for(lambda: receiver.deliveries, what="the delivery to start")
    second = submit(stack, {"prompt": "next [[fake: tokens=2]]"})
    assert wait_until_finished(stack, second["id"], timeout=5)["status"] == "succeeded"
    assert get(stack, first["id"])["webhook"]["state"] == "pending"  # still waiting on the receiver


@pytest.mark.parametrize(
    ("url", "env", "message"),
    [
        ("http://127.0.0.1:9/x", {"WEBHOOK_SECRET": SECRET}, "internal address"),
        ("http://[::1]:9/x", {"WEBHOOK_SECRET": SECRET}, "internal address"),
        ("http://10.0.0.7/x", {"WEBHOOK_SECRET": SECRET}, "internal address"),
        ("http://169.254.169.254/latest/meta-data", {"WEBHOOK_SECRET": SECRET}, "internal address"),
        ("http://0.0.0.0/x", {"WEBHOOK_SECRET": SECRET}, "internal address"),
        ("ftp://example.com/x", {"WEBHOOK_SECRET": SECRET}, "http(s)"),
        ("http://127.0.0.1:9/x", {}, "WEBHOOK_SECRET"),
    ],
    ids=["loopback", "ipv6-loopback", "private", "metadata", "unspecified", "ftp", "webhooks-off"],
)
def test_refused_callback_urls_are_422(service_env, monkeypatch, url, env, message):
    for name in ("REDIS_URL", "API_KEYS"):
        monkeypatch.setenv(name, service_env[name])
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    response = create_app().test_client().post("/v1/jobs", json={"prompt": "hi", "callback_url": url}, headers=ALICE)
    assert response.status_code == 422
    assert message in response.get_json()["errors"]["json"]["callback_url"][0]


def test_a_receiver_slower_than_the_timeout_is_retried(start_api, start_worker, receiver):
    api = start_api(**WEBHOOKS_ON)
    start_worker(*LLM_QUEUES, **WEBHOOKS_ON)
    start_worker("webhooks", **WEBHOOKS_ON, WEBHOOK_TIMEOUT_S="1")
    receiver.script = [(200, {}, 3.0)]  # answers, but only after the sender gave up
    job = submit(api, {"prompt": "hi [[fake: tokens=2]]", "callback_url": receiver.url})
    hook = webhook_of(api, job["id"], "delivered")
    assert hook["attempts"] == 2
    assert [d.headers["webhook-id"] for d in receiver.deliveries] == [hook["id"]] * 2


def test_a_delivery_whose_worker_dies_mid_attempt_is_sent_again(start_api, start_worker, start_scheduler, receiver):
    slow_receiver = {**WEBHOOKS_ON, "WEBHOOK_TIMEOUT_S": "60"}
    api = start_api(**slow_receiver)
    start_worker(*LLM_QUEUES, **slow_receiver)
    start_scheduler(**slow_receiver)
    doomed = start_worker("webhooks", **slow_receiver)
    receiver.script = [(200, {}, 40.0)]  # the first attempt hangs: its worker is killed meanwhile
    job = submit(api, {"prompt": "hi [[fake: tokens=2]]", "callback_url": receiver.url})
    wait_for(lambda: len(receiver.deliveries) == 1, what="the first attempt")

    kill_tree(doomed.pid)  # the pool, its worker and the work horse in the middle of the POST
    start_worker("webhooks", **slow_receiver)
    hook = webhook_of(api, job["id"], "delivered", timeout=45)  # RQ alone would leave it pending for ~11 min

    first, second = receiver.deliveries
    assert second.headers["webhook-id"] == first.headers["webhook-id"] == hook["id"]
    assert second.body == first.body
    assert hook["attempts"] == 1  # the lost attempt, made again: not a new one
    assert deliveries_counted(api) == {"worker_lost": 1, "delivered": 1}
