"""Every route that changes something is limited per client: cancel and webhook
redelivery by CHANGE_RATE_LIMIT, retry by the submit limit and queue back-pressure; and a
client's pending webhook deliveries are bounded. Real gunicorn and Redis."""

from __future__ import annotations

import os
import re
import signal

import requests

from tests.support.jobs import post_job, submit
from tests.support.keys import ALICE, BOB
from tests.support.webhooks import WEBHOOKS_ON, webhook_of


def post(api: str, path: str, headers: dict = ALICE) -> requests.Response:
    return requests.post(f"{api}{path}", headers=headers, timeout=10)


def assert_refused(response: requests.Response, code: int, words: str) -> None:
    assert response.status_code == code, response.text
    assert response.json()["code"] == code and words in response.json()["message"], response.text
    assert float(response.headers["Retry-After"]) > 0


def test_cancel_and_redelivery_share_a_per_client_limit(start_api):
    api = start_api(CHANGE_RATE_LIMIT="2/minute")  # no worker: jobs stay queued
    jobs = [submit(api, {"prompt": "never runs"}) for _ in range(3)]
    batch = requests.post(f"{api}/v1/batches", json={"jobs": [{"prompt": "x"}]}, headers=ALICE, timeout=10).json()
    canceled = [post(api, f"/v1/jobs/{job['id']}/cancel") for job in jobs[:2]]
    assert [r.status_code for r in canceled] == [200, 200]
    assert "Retry-After" not in canceled[0].headers and canceled[0].headers["X-RateLimit-Remaining"] == "1"

    refused = post(api, f"/v1/jobs/{jobs[2]['id']}/cancel")
    assert_refused(refused, 429, "CHANGE_RATE_LIMIT")
    said = re.search(r"retry after (\d+) seconds", refused.json()["message"])
    assert said and abs(int(said[1]) - int(refused.headers["Retry-After"])) <= 1  # computed a moment apart
    assert_refused(post(api, f"/v1/jobs/{jobs[0]['id']}/webhook/redeliver"), 429, "CHANGE_RATE_LIMIT")
    assert_refused(post(api, f"/v1/batches/{batch['id']}/webhook/redeliver"), 429, "CHANGE_RATE_LIMIT")
    bobs = submit(api, {"prompt": "never runs"}, headers=BOB)
    assert post(api, f"/v1/jobs/{bobs['id']}/cancel", BOB).status_code == 200  # bob has his own allowance


def test_a_retry_counts_as_a_submit_and_waits_for_a_full_queue(start_api):
    api = start_api(RATE_LIMIT="4/minute", QUEUE_MAX_DEPTH="1")  # no worker: jobs stay queued
    first = submit(api, {"prompt": "never runs"})  # submit 1
    post(api, f"/v1/jobs/{first['id']}/cancel")
    second = submit(api, {"prompt": "never runs"})  # submit 2; the queue is full now
    for _ in range(3):  # a retry refused for a full queue is not counted against the client
        assert_refused(post(api, f"/v1/jobs/{first['id']}/retry"), 503, "queue is full")

    post(api, f"/v1/jobs/{second['id']}/cancel")
    for _ in range(2):  # 3, 4
        assert post(api, f"/v1/jobs/{first['id']}/retry").status_code == 202
        post(api, f"/v1/jobs/{first['id']}/cancel")
    assert_refused(post(api, f"/v1/jobs/{first['id']}/retry"), 429, "submit limit")
    response = post_job(api, {"prompt": "hi"})
    assert_refused(response, 429, "submit limit")  # one allowance for submits and retries


def test_redelivery_is_refused_while_pending_and_past_the_clients_pending_bound(
    start_api, start_worker, receiver, processes
):
    api = start_api(**WEBHOOKS_ON, WEBHOOK_MAX_PENDING_PER_CLIENT="2")
    jobs = [submit(api, {"prompt": "never runs", "callback_url": receiver.url}) for _ in range(3)]
    for job in jobs:
        post(api, f"/v1/jobs/{job['id']}/cancel")  # ends at once: its webhook is pending (no webhooks worker yet)
    assert_refused(post(api, f"/v1/jobs/{jobs[0]['id']}/webhook/redeliver"), 409, "still pending")

    deliverer = start_worker("webhooks", **WEBHOOKS_ON)
    for job in jobs:
        webhook_of(api, job["id"], "delivered")
    os.killpg(deliverer.pid, signal.SIGTERM)  # from here on, redeliveries stay pending
    deliverer.wait(timeout=30)

    assert post(api, f"/v1/jobs/{jobs[0]['id']}/webhook/redeliver").status_code == 202
    assert_refused(post(api, f"/v1/jobs/{jobs[0]['id']}/webhook/redeliver"), 409, "still pending")
    assert post(api, f"/v1/jobs/{jobs[1]['id']}/webhook/redeliver").status_code == 202
    assert_refused(post(api, f"/v1/jobs/{jobs[2]['id']}/webhook/redeliver"), 429, "WEBHOOK_MAX_PENDING_PER_CLIENT")
    assert len(receiver.deliveries) == 3
