"""The whole service as real processes: gunicorn, worker.py, Redis, the fake Anthropic
server, and the real SDK between them."""

from __future__ import annotations

import pytest
import requests

from service.llm.pricing import cost_usd
from tests.support.jobs import get, parse, submit, wait_until_finished
from tests.support.keys import ALICE, BOB
from tests.support.waiting import wait_for


def test_submit_stream_and_succeed_with_usage_and_cost(start_api, start_worker, fake_anthropic):
    api = start_api()
    start_worker()
    prompt = "Tell me about queues [[fake: tokens=40 chunk_delay_ms=50]]"
    job = submit(api, {"prompt": prompt, "priority": "high", "metadata": {"ticket": "T-1"}})
    assert job["status"] == "queued"

    # While it streams (40 deltas, 50 ms apart), progress shows part of the text.
    running = wait_for(
        lambda: (j := get(api, job["id"]))["status"] == "running" and 0 < j["progress"]["output_tokens"] < 40 and j,
        what="partial progress while running",
    )
    assert running["progress"]["text"]
    assert running["started_at"] and running["finished_at"] is None

    done = wait_until_finished(api, job["id"])
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["stop_reason"] == "end_turn"
    assert result["usage"] == {"input_tokens": len(prompt) // 4, "output_tokens": 40}
    assert result["cost_usd"] == pytest.approx(cost_usd(done["model"], result["usage"]))
    assert result["cost_usd"] > 0
    assert len(result["text"].split()) == 40
    assert done["progress"] == {"output_tokens": 40, "text": result["text"]}
    assert running["progress"]["text"] == result["text"][: len(running["progress"]["text"])]
    assert done["attempts"] == 1
    assert done["metadata"] == {"ticket": "T-1"}
    assert done["error"] is None
    assert parse(done["created_at"]) <= parse(done["started_at"]) <= parse(done["finished_at"])
    # the simple form gets the whole Message too
    message = result["message"]
    assert message["content"] == [{"type": "text", "text": result["text"]}] and message["usage"] == result["usage"]
    assert (message["role"], message["stop_reason"], result["output"]) == ("assistant", "end_turn", None)
    sent = requests.get(f"{fake_anthropic}/_fake/requests", timeout=5).json()
    assert any(r["body"]["messages"][0]["content"] == prompt for r in sent)


def test_high_priority_runs_before_earlier_low_jobs(start_api, start_worker):
    api = start_api()
    lows = [submit(api, {"prompt": f"low {i} [[fake: tokens=2]]", "priority": "low"}) for i in range(3)]
    high = submit(api, {"prompt": "high [[fake: tokens=2]]", "priority": "high"})
    start_worker()  # one worker process on all queues, started after everything is queued

    jobs = [wait_until_finished(api, j["id"]) for j in [*lows, high]]
    assert all(j["status"] == "succeeded" for j in jobs)
    high_started = parse(jobs[-1]["started_at"])
    assert all(high_started < parse(low["started_at"]) for low in jobs[:-1])


def test_a_worker_serves_only_its_queues(start_api, start_worker):
    api = start_api()
    start_worker("high")
    low = submit(api, {"prompt": "low [[fake: tokens=2]]", "priority": "low"})
    high = submit(api, {"prompt": "high [[fake: tokens=2]]", "priority": "high"})
    assert wait_until_finished(api, high["id"])["status"] == "succeeded"
    assert get(api, low["id"])["status"] == "queued"


def test_provider_rejection_fails_at_once_with_its_message(start_api, start_worker):
    api = start_api()
    start_worker()
    job = submit(api, {"prompt": "bad [[fake: error=400]]"})
    done = wait_until_finished(api, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "invalid_request_error"
    assert done["error"]["retryable"] is False
    assert done["error"]["message"]
    assert done["result"] is None and done["attempts"] == 1


def test_deadline_fails_a_silent_call_and_frees_the_worker(start_api, start_worker):
    api = start_api()
    start_worker()
    silent = submit(api, {"prompt": "x [[fake: hang=1 after=3]]", "timeout_s": 2})
    after = submit(api, {"prompt": "next [[fake: tokens=3]]"})

    done = wait_until_finished(api, silent["id"], timeout=20)
    assert done["status"] == "failed"
    assert done["error"]["type"] == "timeout"
    assert done["progress"]["output_tokens"] == 3  # the partial text is kept
    assert (parse(done["finished_at"]) - parse(done["started_at"])).total_seconds() < 10
    # the one worker process is free again and runs the next job
    assert wait_until_finished(api, after["id"])["status"] == "succeeded"


def test_clients_see_only_their_own_jobs(start_api):
    api = start_api()
    job = submit(api, {"prompt": "mine"})
    assert requests.get(f"{api}/v1/jobs/{job['id']}", headers=BOB, timeout=10).status_code == 404
    assert requests.get(f"{api}/v1/jobs", headers=BOB, timeout=10).json()["data"] == []
    assert [j["id"] for j in requests.get(f"{api}/v1/jobs", headers=ALICE, timeout=10).json()["data"]] == [job["id"]]


def test_errors_from_the_server_are_json(start_api):
    api = start_api()
    for response in (
        requests.get(f"{api}/nope", timeout=10),
        requests.post(f"{api}/v1/jobs", data=b"{not json", headers={**ALICE, "Content-Type": "application/json"},
                      timeout=10),
        requests.post(f"{api}/v1/jobs", data=b"x" * 32_000_001,
                      headers={**ALICE, "Content-Type": "application/json"}, timeout=10),
        requests.get(f"{api}/v1/jobs", timeout=10),
    ):  # fmt: skip
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert body["code"] == response.status_code and body["status"] and body["message"]
