"""rq-dashboard at /dashboard/, against the real stack: operator basic auth, no client
rate limits, our queues and workers on JSON-serialized jobs, and a requeue from the failed
registry that runs the job again afresh."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from tests.conftest import ALICE, scrape, value, wait_for
from tests.test_end_to_end import get, submit, wait_until_finished
from tests.test_events import read_stream
from tests.test_failure_semantics import FAST_RETRIES, directive, watch

OPERATOR = {"DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "s3cret-dashboard-pw"}
AUTH = ("ops", "s3cret-dashboard-pw")


def dashboard(api: str, path: str, method: str = "GET", **kwargs) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    return requests.request(method, f"{api}/dashboard/{path}", timeout=10, **kwargs)


def assert_json_error(response: requests.Response, code: int) -> dict:
    assert response.status_code == code, response.text
    body = response.json()
    assert body["code"] == code and body["message"] and body["status"]
    return body


@pytest.fixture
def stack(start_api, start_worker):
    api = start_api(**OPERATOR, **FAST_RETRIES, RATE_LIMIT="1/minute")
    start_worker(**FAST_RETRIES)
    return api


def test_the_dashboard_is_off_unless_configured(start_api):
    api = start_api()
    assert_json_error(dashboard(api, ""), 404)
    assert_json_error(dashboard(api, "0/data/queues.json", auth=None), 404)


def test_operator_basic_auth_in_the_one_error_shape(stack):
    for auth in (None, ("ops", "wrong"), ("someone", AUTH[1]), ("", "")):
        response = dashboard(stack, "", auth=auth)
        assert_json_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    # A client's API key is no operator login.
    assert_json_error(dashboard(stack, "", auth=None, headers=ALICE), 401)
    ok = dashboard(stack, "")
    assert ok.status_code == 200 and ok.headers["Content-Type"].startswith("text/html")


def test_no_client_rate_limit_and_it_shows_our_queues_and_workers(stack):
    # The client limit (1/minute) is on: a second submit is refused, the dashboard never is.
    slow = submit(stack, {"prompt": f"slow {directive(tokens=40, chunk_delay_ms=50)}", "priority": "low"})
    over = requests.post(f"{stack}/v1/jobs", json={"prompt": "x"}, headers=ALICE, timeout=10)
    assert_json_error(over, 429)
    assert all(dashboard(stack, "0/data/queues.json").status_code == 200 for _ in range(15))

    queues = {q["name"]: q for q in dashboard(stack, "0/data/queues.json").json()["queues"]}
    assert {"high", "default", "low"} <= set(queues)

    # A busy worker's current job is read with our JSON serializer.
    wait_for(lambda: get(stack, slow["id"])["status"] == "running", what="the slow job to run")
    workers = dashboard(stack, "0/data/workers.json").json()["workers"]
    assert workers and all({"high", "default", "low"} <= set(w["queues"]) for w in workers)
    assert [w["current_job"]["job_id"] for w in workers if w["current_job"] != "idle"] == [slow["id"]]
    assert dashboard(stack, "0/view/workers").status_code == 200
    assert dashboard(stack, "0/data/jobs/low/started/8/asc/1.json").json()["jobs"][0]["id"] == slow["id"]
    assert wait_until_finished(stack, slow["id"])["status"] == "succeeded"


def test_requeue_from_the_failed_registry_is_a_fresh_run(stack):
    # Refused for good at once the first time (400), fine the second; 3 s to live.
    prompt = f"x {directive(fail_times=1, key=uuid.uuid4().hex, error=400)}"
    job = submit(stack, {"prompt": prompt, "timeout_s": 3})
    failed = wait_until_finished(stack, job["id"])
    assert failed["status"] == "failed" and failed["attempts"] == 1

    listed = dashboard(stack, "0/data/jobs/default/failed/8/asc/1.json").json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    info = dashboard(stack, f"0/data/job/{job['id']}.json").json()
    assert info["status"] == "failed" and '"attempts": 1' in info["metadata"]
    assert dashboard(stack, f"0/view/job/{job['id']}").status_code == 200

    time.sleep(3.2)  # past the first run's deadline: only a fresh one lets the re-run finish
    requeued = dashboard(stack, f"job/{job['id']}/requeue", method="POST")
    assert requeued.status_code == 200 and requeued.json() == {"status": "OK"}

    seen = watch(stack, job["id"], until={"succeeded", "failed", "canceled"}, timeout=15)
    assert seen[0]["status"] in ("queued", "running"), seen[0]
    done = seen[-1]
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and done["error"] is None
    events = read_stream(stack, job["id"])
    assert events[-1].event == "succeeded" and events[-1].data["status"] == "succeeded"
    assert [e.event for e in events if e.event != "progress"] == ["succeeded"]  # the old run's end is gone
    assert dashboard(stack, "0/data/jobs/default/failed/8/asc/1.json").json()["jobs"] == []
    assert value(scrape(stack), "llmjobs_job_retries_total", queue="default", reason="requested") == 1
