"""Spend budgets with real processes: gunicorn, worker.py, the scheduler and the fake provider.
Many submitters against a small budget never make what the jobs cost pass it; reservations
return to zero when the jobs end, also after their worker was SIGKILLed mid-call."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.support.concurrency import all_at_once
from tests.support.fake_server import directive, fails_first
from tests.support.jobs import TERMINAL, post_job, submit
from tests.support.keys import ALICE, ALICE_KEY, BOB, BOB_KEY
from tests.support.processes import kill_tree
from tests.support.waiting import wait_for

CAROL_KEY = "carol-key-0123456789abcdef"
CAROL = {"Authorization": f"Bearer {CAROL_KEY}"}
API_KEYS = f"alice={ALICE_KEY},bob={BOB_KEY},carol={CAROL_KEY}"
MAX_TOKENS = 1000
# Every reply is exactly max_tokens long: a job costs nearly its worst case (~0.0100 of ~0.0121 USD).
FULL_REPLY = directive(tokens=MAX_TOKENS, chunk_delay_ms=0)


def finished(api: str, job_id: str, headers: dict, timeout: float = 60) -> dict:
    def ended() -> dict | None:
        job = requests.get(f"{api}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        return job if job["status"] in TERMINAL else None

    return wait_for(ended, timeout, what=f"job {job_id}")


def budget_of(api: str, headers: dict) -> dict:
    response = requests.get(f"{api}/v1/usage", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["budget"]


def submit_until_refused(api: str, headers: dict, submits: int, accepted: list[str], lock: threading.Lock) -> int:
    """Submit up to `submits` jobs; returns how many the budget refused."""
    refused = 0
    for n in range(submits):
        body = {"prompt": f"job {n} {FULL_REPLY}", "max_tokens": MAX_TOKENS}
        response = post_job(api, body, headers, timeout=30)
        if response.status_code == 202:
            with lock:
                accepted.append(response.json()["id"])
        else:
            assert response.status_code == 429, response.text
            assert response.json()["errors"]["type"] == "budget_exceeded"
            refused += 1
    return refused


@pytest.mark.timeout(300)
def test_concurrent_submitters_never_make_spend_pass_a_small_budget(start_api, start_worker):
    budget_usd = 0.10
    api = start_api(API_KEYS=API_KEYS, CLIENT_BUDGETS=f"alice={budget_usd}/day,carol={budget_usd}/day")
    start_worker(WORKER_CONCURRENCY="40")
    accepted: dict[str, list[str]] = {"alice": [], "bob": [], "carol": []}
    lock = threading.Lock()
    submitters = [("alice", ALICE)] * 8 + [("carol", CAROL)] * 4 + [("bob", BOB)] * 4
    turn = iter(range(len(submitters)))

    def submitter() -> int:
        with lock:
            name, headers = submitters[next(turn)]
        return submit_until_refused(api, headers, 6, accepted[name], lock)

    refusals = all_at_once(len(submitters), submitter)

    assert sum(refusals) > 0  # the budgets did refuse: 72 worst cases of ~0.012 USD do not fit in 0.10
    assert len(accepted["bob"]) == 24  # bob has no budget: none of his submits was refused
    for name, headers in (("alice", ALICE), ("carol", CAROL)):
        # Whatever was admitted, the jobs end and what they cost fits the budget.
        jobs = [finished(api, job_id, headers, timeout=120) for job_id in accepted[name]]
        assert {job["status"] for job in jobs} == {"succeeded"}
        cost = sum(job["result"]["cost_usd"] for job in jobs)
        assert cost <= budget_usd
        # Keep going one job at a time until refused: the budget is used, never passed.
        more = {"prompt": f"more {FULL_REPLY}", "max_tokens": MAX_TOKENS}
        while (response := post_job(api, more, headers, timeout=30)).status_code == 202:
            cost += finished(api, response.json()["id"], headers)["result"]["cost_usd"]
        assert response.status_code == 429 and response.json()["errors"]["type"] == "budget_exceeded"
        budget = budget_of(api, headers)
        print(f"{name}: {len(jobs)} admitted concurrently, spent {budget['spent']} of {budget_usd}")
        assert cost <= budget_usd
        assert budget["reserved"] == 0  # every job ended: nothing held
        assert budget["spent"] == pytest.approx(cost, abs=1e-5)  # what the jobs cost, and nothing else
        assert budget["spent"] > budget_usd - 2 * 0.0121  # and the budget was put to use, not just refused
    assert all(finished(api, job_id, BOB)["status"] == "succeeded" for job_id in accepted["bob"])


@pytest.mark.timeout(300)
def test_reservations_of_a_sigkilled_workers_jobs_settle_when_recovered(
    start_api, start_worker, start_scheduler, redis_conn
):
    # alice's budget holds her job's worst case but not two more (the lost call, counted at its
    # worst case, and the run again); bob's holds plenty.
    api = start_api(CLIENT_BUDGETS="alice=0.03/day,bob=1/day")
    start_scheduler()
    doomed = start_worker(WORKER_CONCURRENCY="4")
    body = {"max_tokens": MAX_TOKENS}
    jobs = {
        "alice": submit(api, {**body, "prompt": fails_first(1, hang=1, after=2)}, ALICE),
        "bob": submit(api, {**body, "prompt": fails_first(1, hang=1, after=2)}, BOB),
    }
    worst = {
        name: int(redis_conn.hget(f"llmjobs:budget:{name}:reserved", job["id"])) / 1e6 for name, job in jobs.items()
    }
    assert 3 * worst["alice"] > 0.03 and worst["alice"] <= 0.03
    heads = {"alice": ALICE, "bob": BOB}

    def streaming(name: str) -> bool:
        job = requests.get(f"{api}/v1/jobs/{jobs[name]['id']}", headers=heads[name], timeout=10).json()
        return job["progress"]["output_tokens"] > 0

    wait_for(lambda: streaming("alice") and streaming("bob"), what="both calls streaming")
    assert kill_tree(doomed.pid) == [doomed.pid]  # mid-call: both calls are held by the fake
    start_worker()

    alice = finished(api, jobs["alice"]["id"], ALICE, timeout=90)
    bob = finished(api, jobs["bob"]["id"], BOB, timeout=90)

    assert alice["status"] == "failed" and alice["error"]["type"] == "budget_exceeded"
    assert bob["status"] == "succeeded" and bob["attempts"] == 2
    alice_budget, bob_budget = budget_of(api, ALICE), budget_of(api, BOB)
    assert alice_budget["reserved"] == 0 and bob_budget["reserved"] == 0
    # The lost call's cost is unknown: it counts at its worst case; the run that finished, at its cost.
    assert alice_budget["spent"] == pytest.approx(worst["alice"], abs=1e-6)
    assert bob_budget["spent"] == pytest.approx(worst["bob"] + bob["result"]["cost_usd"], abs=1e-5)
