"""Signed webhooks, end to end: a real receiver HTTP server, the API and workers as processes."""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import datetime

import pytest
import requests
from llmjobs import Job, verify_webhook
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from standardwebhooks import Webhook, WebhookVerificationError

from service.app import create_app
from service.config import SettingsError, load_settings
from service.jobs.storage.queues import SERIALIZER, WEBHOOK_QUEUE
from tests.support.jobs import get, post_job_in_app, submit, wait_until_finished
from tests.support.keys import ALICE, BOB
from tests.support.processes import kill_tree
from tests.support.prometheus import scrape
from tests.support.waiting import wait_for
from tests.support.webhooks import SECRET, WEBHOOKS_ON, webhook_of

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


def test_the_end_of_a_job_is_posted_once_signed_per_standard_webhooks(stack, receiver):
    job = submit(stack, {"prompt": "hi [[fake: tokens=5]]", "callback_url": receiver.url})
    hook = webhook_of(stack, job["id"], "delivered")

    (delivery,) = receiver.deliveries
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    assert headers["webhook-id"] == hook["id"]
    assert headers["webhook-signature"].startswith("v1,")
    assert abs(int(headers["webhook-timestamp"]) - delivery.at) < 30
    # verified with the reference implementation, and with our own client's verifier
    payload = Webhook(SECRET).verify(delivery.body, headers)
    # the Standard Webhooks payload shape: type, timestamp (the job's end), data (the job)
    done = get(stack, job["id"])
    assert payload == {"type": "job.succeeded", "timestamp": done["finished_at"], "data": payload["data"]}
    body = payload["data"]
    assert body["id"] == job["id"] and body["status"] == "succeeded" and body["result"]["text"]
    # ... as the API shows it, but for the state of the delivery that carries it (pending as it is sent)
    assert "webhook" not in body and body == {name: value for name, value in done.items() if name != "webhook"}
    event = verify_webhook(delivery.body, headers, SECRET)
    assert event.raw == payload and event.type == "job.succeeded" and event.data == Job.from_dict(body)
    assert event.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z") == done["finished_at"]
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
    payload = json.loads(delivery.body)
    assert payload["type"] == f"job.{outcome}" and payload["data"]["status"] == outcome


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
    # the same body: the job has not changed, and its end (the timestamp) neither
    assert receiver.deliveries[1].body == receiver.deliveries[0].body
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
    response = post_job_in_app(create_app().test_client(), {"prompt": "hi", "callback_url": url})
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


@pytest.mark.parametrize("retry_after", ["inf", "99999999999"])
def test_a_receivers_endless_retry_after_is_a_wait_of_at_most_a_day(stack, receiver, redis_conn, retry_after):
    receiver.script = [(503, {"Retry-After": retry_after}, 0.0)]
    job = submit(stack, {"prompt": "hi [[fake: tokens=2]]", "callback_url": receiver.url})
    hook = wait_for(lambda: (h := get(stack, job["id"])["webhook"]) and h["attempts"] == 1 and h, what="one attempt")
    due = datetime.fromisoformat(hook["next_attempt_at"].replace("Z", "+00:00")).timestamp()
    assert hook["state"] == "pending" and due <= time.time() + 24 * 3600 + 5
    # the next attempt waits in RQ's schedule: the delivery neither failed nor got lost
    scheduled = ScheduledJobRegistry(WEBHOOK_QUEUE, connection=redis_conn, serializer=SERIALIZER)
    wait_for(lambda: len(scheduled) == 1, what="the next attempt to be scheduled")
    assert len(FailedJobRegistry(WEBHOOK_QUEUE, connection=redis_conn, serializer=SERIALIZER)) == 0


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def test_each_client_signs_with_its_own_secret_and_with_both_during_a_rotation(start_api, start_worker, receiver):
    alice_new, alice_old = new_secret(), new_secret()
    settings = {**WEBHOOKS_ON, "WEBHOOK_SECRETS": f"alice={alice_new},alice={alice_old}"}  # bob: WEBHOOK_SECRET
    api = start_api(**settings)
    start_worker(**settings)
    start_worker("webhooks", **settings)
    alices = submit(api, {"prompt": "alice [[fake: tokens=2]]", "callback_url": receiver.url})
    bobs = submit(api, {"prompt": "bob [[fake: tokens=2]]", "callback_url": receiver.url}, headers=BOB)
    wait_for(lambda: len(receiver.deliveries) == 2, what="both deliveries")
    by_job = {json.loads(d.body)["data"]["id"]: d for d in receiver.deliveries}
    alice, bob = by_job[alices["id"]], by_job[bobs["id"]]

    assert len(alice.headers["webhook-signature"].split(" ")) == 2
    for secret in (alice_new, alice_old):  # each secret alone verifies: the receiver may hold either
        assert Webhook(secret).verify(alice.body, alice.headers)["data"]["id"] == alices["id"]
    assert Webhook(SECRET).verify(bob.body, bob.headers)["data"]["id"] == bobs["id"]
    for secret, delivery in [(SECRET, alice), (alice_new, bob), (alice_old, bob)]:
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(delivery.body, delivery.headers)


def test_a_client_without_a_secret_of_its_own_or_a_shared_one_gets_no_webhooks(service_env, monkeypatch, receiver):
    for name in ("REDIS_URL", "API_KEYS"):
        monkeypatch.setenv(name, service_env[name])
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("WEBHOOK_SECRETS", f"alice={new_secret()}")
    monkeypatch.setenv("CALLBACK_ALLOWED_NETWORKS", "127.0.0.1/32")
    client = create_app().test_client()
    body = {"prompt": "hi", "callback_url": receiver.url}
    assert post_job_in_app(client, body).status_code == 202
    response = post_job_in_app(client, body, BOB)
    assert response.status_code == 422
    assert "webhooks are off for this client" in response.get_json()["errors"]["json"]["callback_url"][0]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("alice", "client=whsec_"),
        ("alice=whsec_not*base64", "client 'alice': the part after whsec_ is not base64"),
        (f"alice={SECRET},alice={SECRET[:-4]}AAA=,alice={SECRET[:-4]}BBB=", "more than two"),
    ],
    ids=["no-client", "not-base64", "three-secrets"],
)
def test_a_bad_webhook_secrets_setting_is_named_without_its_secrets(monkeypatch, raw, message):
    monkeypatch.setenv("WEBHOOK_SECRETS", raw)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith("WEBHOOK_SECRETS: ") and message in str(caught.value)
    assert SECRET.removeprefix("whsec_")[:20] not in str(caught.value)
