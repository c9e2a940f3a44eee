"""A worker of the batch tier killed (SIGKILL) at each point of a provider batch's life
loses no job, leaves no provider batch unread, and ends each job once, its usage counted
once; another worker takes over when the dead one's lease lapses (~10 s).

The fake holds the wire open where the kill must land (its batch directives): a create
before it makes the batch (`create_delay_ms`), a create's answer after it made it
(`created_delay_ms`), a batch in progress (`batch_delay_ms`), a results stream midway
(`result_delay_ms`); it stamps a batch as a provider whose clock is behind would
(`clock_behind_ms`), and says which batches were read to their end (`/_fake/batches`)."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import redis
import requests

from service.jobs.storage.keys import OPEN_PROVIDER_BATCHES_KEY, events_key, provider_batch_key
from tests.support.fake_server import directive
from tests.support.jobs import get, submit, wait_until_finished
from tests.support.keys import ALICE
from tests.support.prometheus import scrape, value
from tests.support.waiting import wait_for

FAST_BATCHES = {"BATCH_COLLECT_S": "0.5", "BATCH_POLL_S": "0.3"}
TERMINAL_TYPES = {b"succeeded", b"failed", b"canceled"}
TAKEOVER_S = 60  # the lease lapses in 10 s; the new worker needs a few more on a loaded machine


def stats(fake: str) -> dict[str, Any]:
    return requests.get(f"{fake}/_stats", timeout=5).json()


def batch_ids(fake: str) -> dict[str, int]:
    """Every batch the fake made: how often its results were read to the end."""
    return {batch["id"]: batch["results_read"] for batch in requests.get(f"{fake}/_fake/batches", timeout=5).json()}


def usage_of(api: str) -> dict[str, Any]:
    return requests.get(f"{api}/v1/usage", headers=ALICE, timeout=10).json()["total"]


def output_tokens(jobs: list[dict]) -> int:
    return sum(job["result"]["usage"]["output_tokens"] for job in jobs)


def batch_job(text: str) -> dict[str, Any]:
    return {"prompt": f"{text} {uuid.uuid4().hex[:8]}", "model": "claude-haiku-4-5", "tier": "batch"}


def terminal_events(redis_conn: redis.Redis, job_id: str) -> int:
    return sum(fields[b"type"] in TERMINAL_TYPES for _, fields in redis_conn.xrange(events_key(job_id)))


def creating(redis_conn: redis.Redis) -> bool:
    """A record has sent its create (the worker is inside it now)."""
    return any(redis_conn.hexists(provider_batch_key(i.decode()), "creating_at") for i in redis_conn.zrange(
        OPEN_PROVIDER_BATCHES_KEY, 0, -1))  # fmt: skip


def kill(worker: subprocess.Popen) -> None:
    worker.kill()  # SIGKILL: nothing runs on the way out
    worker.wait(timeout=10)


def ends_once(api: str, redis_conn: redis.Redis, job_ids: list[str]) -> list[dict]:
    done = [wait_until_finished(api, job_id, timeout=TAKEOVER_S) for job_id in job_ids]
    assert all(job["status"] == "succeeded" for job in done), done
    wait_for(lambda: redis_conn.zcard(OPEN_PROVIDER_BATCHES_KEY) == 0, timeout=30, what="every record closed")
    assert [terminal_events(redis_conn, job_id) for job_id in job_ids] == [1] * len(job_ids)
    return done


def test_killed_before_the_create_the_jobs_go_out_with_the_next_worker(
    start_api, start_worker, fake_anthropic, redis_conn
):
    api = start_api(**FAST_BATCHES)
    doomed = start_worker(**FAST_BATCHES)
    before = stats(fake_anthropic)
    # The fake waits 5 s before it makes the batch; the killed caller's is never made.
    job = submit(api, batch_job(f"before {directive(create_delay_ms=5000, batch_delay_ms=300)}"))
    wait_for(lambda: creating(redis_conn), timeout=30, what="the create to be sent")
    kill(doomed)
    start_worker(**FAST_BATCHES)
    [done] = ends_once(api, redis_conn, [job["id"]])
    after = stats(fake_anthropic)
    assert after["batch_creates"] == before["batch_creates"] + 1  # the dead worker's create made none
    assert after["batch_results"] - before["batch_results"] >= after["batch_requests"] - before["batch_requests"]
    assert done["attempts"] == 1
    metrics = requests.get(f"{api}/metrics", timeout=10).text
    assert "llmjobs_batch_jobs_sent_again_total 1.0" in metrics  # counted: the provider may have it twice


def test_killed_between_the_create_and_its_record_the_batch_is_found_again(
    start_api, start_worker, fake_anthropic, redis_conn
):
    api = start_api(**FAST_BATCHES)
    doomed = start_worker(**FAST_BATCHES)
    before = stats(fake_anthropic)
    # The fake makes the batch at once and holds its answer 5 s: the worker dies unaware of
    # it. Three jobs: no other test's batch (this fake serves them all) has that size.
    held = directive(created_delay_ms=5000, batch_delay_ms=300)
    jobs = [submit(api, batch_job(f"between {held}")) for _ in range(3)]
    wait_for(lambda: stats(fake_anthropic)["batch_creates"] > before["batch_creates"], timeout=30)
    kill(doomed)
    start_worker(**FAST_BATCHES)
    ends_once(api, redis_conn, [job["id"] for job in jobs])
    after = stats(fake_anthropic)
    assert after["batch_creates"] == before["batch_creates"] + 1  # adopted, not sent again
    assert after["batch_results"] - before["batch_results"] >= 3  # the orphan was read
    metrics = requests.get(f"{api}/metrics", timeout=10).text
    assert "llmjobs_provider_batches_adopted_total 1.0" in metrics


def test_killed_while_polling_another_worker_takes_the_batch_over(start_api, start_worker, fake_anthropic, redis_conn):
    api = start_api(**FAST_BATCHES)
    doomed = start_worker(**FAST_BATCHES)
    before = stats(fake_anthropic)
    job = submit(api, batch_job(f"polling {directive(batch_delay_ms=6000)}"))
    wait_for(lambda: get(api, job["id"])["status"] == "running", timeout=30)
    kill(doomed)
    start_worker(**FAST_BATCHES)
    [done] = ends_once(api, redis_conn, [job["id"]])
    assert stats(fake_anthropic)["batch_creates"] == before["batch_creates"] + 1
    assert done["attempts"] == 1


def test_killed_between_the_create_and_its_record_every_batch_it_may_have_made_is_read(
    start_api, start_worker, fake_anthropic, redis_conn
):
    api = start_api(**FAST_BATCHES)
    doomed = start_worker(**FAST_BATCHES)
    known = batch_ids(fake_anthropic)
    # The fake waits 3 s before it makes the batch, and holds its answer 5 s after: the
    # worker dies unaware of it. Meanwhile another program on the same API key makes a
    # batch of the same size: the older of the two, made after the create was sent. Four
    # jobs: no other test's batch (this fake serves them all) has that size.
    held = directive(create_delay_ms=3000, created_delay_ms=5000, batch_delay_ms=1500)
    jobs = [submit(api, batch_job(f"look-alike {held}")) for _ in range(4)]
    wait_for(lambda: creating(redis_conn), timeout=30, what="the create to be sent")
    other = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "not ours"}]}
    response = requests.post(
        f"{fake_anthropic}/v1/messages/batches",
        json={"requests": [{"custom_id": f"another-program-{i}", "params": other} for i in range(4)]},
        headers={"x-api-key": "test-key"},  # the same API key
        timeout=10,
    )
    assert response.status_code == 200, response.text
    wait_for(lambda: len(batch_ids(fake_anthropic)) == len(known) + 2, timeout=30, what="our create's batch")
    kill(doomed)
    start_worker(**FAST_BATCHES)
    done = ends_once(api, redis_conn, [job["id"] for job in jobs])
    made = {batch_id: read for batch_id, read in batch_ids(fake_anthropic).items() if batch_id not in known}
    assert len(made) == 2 and all(made.values()), made  # none sent again, and both read
    samples = scrape(api)
    assert value(samples, "llmjobs_provider_batches_adopted_total") == 2
    assert value(samples, "llmjobs_batch_jobs_sent_again_total") == 0
    assert value(samples, "llmjobs_batch_results_dropped_total", reason="unknown") == 4  # the other program's
    assert usage_of(api)["output_tokens"] == output_tokens(done)


def test_killed_between_the_create_and_its_record_a_provider_clock_behind_ours_does_not_hide_the_batch(
    start_api, start_worker, fake_anthropic, redis_conn
):
    api = start_api(**FAST_BATCHES)
    doomed = start_worker(**FAST_BATCHES)
    first = wait_until_finished(api, submit(api, batch_job(f"first {directive(batch_delay_ms=300)}"))["id"], timeout=60)
    assert first["status"] == "succeeded"
    known = batch_ids(fake_anthropic)
    # The fake stamps the batch two minutes before the create was sent (its clock behind
    # ours), and holds its answer 5 s: the worker dies unaware of it. Five jobs: no other
    # test's batch has that size.
    held = directive(created_delay_ms=5000, batch_delay_ms=300, clock_behind_ms=120_000)
    jobs = [submit(api, batch_job(f"skewed {held}")) for _ in range(5)]
    wait_for(lambda: len(batch_ids(fake_anthropic)) > len(known), timeout=30, what="our create's batch")
    kill(doomed)
    start_worker(**FAST_BATCHES)
    done = ends_once(api, redis_conn, [job["id"] for job in jobs])
    made = {batch_id: read for batch_id, read in batch_ids(fake_anthropic).items() if batch_id not in known}
    assert len(made) == 1 and all(made.values()), made  # adopted, read, not sent again
    samples = scrape(api)
    assert value(samples, "llmjobs_provider_batches_adopted_total") == 1
    assert value(samples, "llmjobs_batch_jobs_sent_again_total") == 0
    assert usage_of(api)["output_tokens"] == output_tokens([first, *done])


def test_killed_while_fanning_out_each_job_ends_once(start_api, start_worker, fake_anthropic, redis_conn):
    api = start_api(**FAST_BATCHES)
    doomed = start_worker(**{**FAST_BATCHES, "BATCH_COLLECT_S": "5"})
    before = stats(fake_anthropic)
    # Results come in reverse order: the 101 later jobs' lines first (the SDK's decoder
    # yields a line once the next one arrives: 100 of them, one chunk, read into their
    # jobs), then 20 s of silence before the second job's line. The batch runs 6 s: one of
    # the chunk's jobs is canceled meanwhile.
    plain = [batch_job("line") for _ in range(103)]
    plain[1] = batch_job(f"held {directive(result_delay_ms=20000, batch_delay_ms=6000)}")
    plain[50] = batch_job(f"canceled {directive(tokens=7)}")
    job_ids: list[str] = []
    for start in range(0, len(plain), 50):
        response = requests.post(f"{api}/v1/batches", json={"jobs": plain[start : start + 50]}, headers=ALICE)
        assert response.status_code == 202, response.text
        job_ids += response.json()["job_ids"]
    held, canceled = job_ids[1], job_ids[50]
    wait_for(lambda: get(api, canceled)["status"] == "running", timeout=60)
    assert requests.post(f"{api}/v1/jobs/{canceled}/cancel", headers=ALICE, timeout=10).status_code == 200
    wait_for(lambda: redis_conn.zcard("rq:finished:batch") >= 99, timeout=60, what="the first chunk's ends")
    assert get(api, held)["status"] == "running"
    kill(doomed)
    start_worker(**FAST_BATCHES)
    done = ends_once(api, redis_conn, [job_id for job_id in job_ids if job_id != canceled])
    assert get(api, canceled)["status"] == "canceled" and terminal_events(redis_conn, canceled) == 1
    after = stats(fake_anthropic)
    assert after["batch_creates"] == before["batch_creates"] + 1
    assert after["batch_results"] - before["batch_results"] >= 103 + 1  # the stream read again by the next worker
    # The first chunk was read twice: each result counts once in the usage (the jobs' own,
    # and the 7 tokens the provider billed for the canceled job's).
    assert usage_of(api)["output_tokens"] == output_tokens(done) + 7
    assert usage_of(api)["jobs"] == 102
    assert value(scrape(api), "llmjobs_batch_results_dropped_total", reason="ended") == 99 + 2
