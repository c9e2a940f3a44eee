"""Every key the service writes expires, or is one of the bounded structures the architecture
page lists (docs/development/architecture.md, "Redis keys without a TTL"): checked after a
mixed workload on real API, worker and scheduler processes."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

import requests

from tests.support.docs_pages import section
from tests.support.event_stream import read_stream
from tests.support.fake_server import directive
from tests.support.jobs import get, submit, wait_until_finished
from tests.support.keys import ALICE
from tests.support.waiting import wait_for
from tests.support.webhooks import WEBHOOKS_ON, webhook_of

KEYS_PAGE, KEYS_SECTION = "development/architecture.md", "### Redis keys without a TTL"


def documented_patterns() -> list[str]:
    """The key patterns of the documented table of bounded structures (its first column)."""
    table = section(KEYS_PAGE, KEYS_SECTION)
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return [pattern for row in rows for pattern in re.findall(r"`([^`]+)`", row)]


def post(api: str, path: str, **kwargs) -> requests.Response:
    return requests.post(f"{api}{path}", headers={**ALICE, **kwargs.pop("headers", {})}, timeout=10, **kwargs)


def test_after_a_mixed_workload_every_key_expires_or_is_a_documented_bounded_structure(
    start_api, start_worker, start_scheduler, receiver, redis_conn
):
    api = start_api(**WEBHOOKS_ON)
    hook = {"callback_url": receiver.url}
    # Canceled while queued (no worker yet), with a webhook.
    queued = submit(api, {"prompt": "never runs", **hook})
    assert post(api, f"/v1/jobs/{queued['id']}/cancel").status_code == 200
    keyed = post(api, "/v1/jobs", json={"prompt": "same [[fake: tokens=2]]"}, headers={"Idempotency-Key": "k-1"})
    again = post(api, "/v1/jobs", json={"prompt": "same [[fake: tokens=2]]"}, headers={"Idempotency-Key": "k-1"})
    assert (keyed.status_code, again.status_code) == (202, 200)
    batch = post(api, "/v1/batches", json={"jobs": [{"prompt": "a [[fake: tokens=2]]"}, {"prompt": "b"}], **hook})
    assert batch.status_code == 202

    start_worker(**WEBHOOKS_ON)
    start_worker("webhooks", **WEBHOOKS_ON)
    start_scheduler(**WEBHOOKS_ON, CLEANUP_INTERVAL_S="1")
    succeeded = submit(api, {"prompt": "ok [[fake: tokens=3]]", **hook})
    failed = submit(api, {"prompt": "bad [[fake: error=400]]"})
    running = submit(api, {"prompt": f"long {directive(tokens=400, chunk_delay_ms=50)}", **hook})
    wait_for(lambda: get(api, running["id"])["status"] == "running", what="the long job to run")
    assert post(api, f"/v1/jobs/{running['id']}/cancel").status_code == 202
    assert read_stream(api, succeeded["id"])[-1].event == "succeeded"
    assert wait_until_finished(api, failed["id"])["status"] == "failed"
    assert post(api, f"/v1/jobs/{failed['id']}/retry").status_code == 202

    for job_id in (queued["id"], keyed.json()["id"], succeeded["id"], failed["id"], running["id"]):
        wait_until_finished(api, job_id)
    for job_id in batch.json()["job_ids"]:
        wait_until_finished(api, job_id)
    for job_id in (queued["id"], succeeded["id"], running["id"]):
        webhook_of(api, job_id, "delivered")
    wait_for(lambda: len(receiver.deliveries) >= 4, what="the batch's webhook too")
    # A delivery's job ends just after its receiver has answered: until then it is running
    # (its hash and its entry in RQ's started registry have no TTL, rightly).
    wait_for(lambda: not list(redis_conn.scan_iter("rq:wip:*")), what="the last delivery's job to end")
    wait_for(lambda: int(redis_conn.hget("llmjobs:maintenance:runs", "runs") or 0) >= 1, what="a clean-up run")

    patterns = documented_patterns()
    assert "rq:job:*" in patterns and "llmjobs:client:*:jobs" in patterns  # the table was read
    persistent = [key.decode() for key in redis_conn.scan_iter(count=1000) if redis_conn.ttl(key) == -1]
    undocumented = [key for key in persistent if not any(fnmatchcase(key, p) for p in patterns)]
    assert undocumented == [], undocumented
    # A job hash without a TTL is a job still waiting or running: none is, now.
    job_hashes = [key for key in persistent if fnmatchcase(key, "rq:job:*") and key != "rq:job:llmjobs-cleanup"]
    assert job_hashes == [], job_hashes
