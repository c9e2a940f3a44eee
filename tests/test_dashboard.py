"""rq-dashboard at /dashboard/, against the real stack: operator basic auth, no client
rate limits, our queues and workers on JSON-serialized jobs, and a requeue from the failed
registry that runs the job again afresh."""

from __future__ import annotations

import html
import json
import re
import time
import uuid

import pytest
import requests

from tests.support.dashboard import AUTH, OPERATOR, dashboard, failed_job_carrying
from tests.support.event_stream import read_stream
from tests.support.fake_server import FAST_RETRIES, directive
from tests.support.jobs import get, post_job, submit, wait_until_finished, watch
from tests.support.keys import ALICE
from tests.support.prometheus import scrape, value
from tests.support.waiting import wait_for


def same_origin(api: str) -> dict[str, str]:
    """What a browser sends with a POST from the dashboard's own pages (plain HTTP: no Sec-Fetch-*)."""
    return {"Origin": api}


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
    over = post_job(stack, {"prompt": "x"})
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
    # Refused for good the first time (400), fine the second; 3 s to live. Each call takes
    # 0.7 s, so the re-run is seen queued or running before it ends.
    prompt = f"x {directive(fail_times=1, key=uuid.uuid4().hex, error=400, latency_ms=700)}"
    job = submit(stack, {"prompt": prompt, "timeout_s": 3})
    failed = wait_until_finished(stack, job["id"])
    assert failed["status"] == "failed" and failed["attempts"] == 1

    listed = dashboard(stack, "0/data/jobs/default/failed/8/asc/1.json").json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    info = dashboard(stack, f"0/data/job/{job['id']}.json").json()
    assert info["status"] == "failed" and '"attempts": 1' in html.unescape(info["metadata"])
    assert dashboard(stack, f"0/view/job/{job['id']}").status_code == 200

    time.sleep(3.2)  # past the first run's deadline: only a fresh one lets the re-run finish
    requeued = dashboard(stack, f"job/{job['id']}/requeue", method="POST", headers=same_origin(stack))
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


# --- stored XSS: client data never reaches the dashboard as markup -------------------------

# The payload: run on the dashboard's origin, it empties a queue with the
# operator's cached credentials.
PAYLOAD = "<img src=x onerror=\"fetch('/dashboard/queue/default/queued/empty',{method:'POST'})\">"


def assert_strict_headers(response: requests.Response) -> dict[str, str]:
    """CSP without inline script or framing, and X-Frame-Options DENY; the policy's directives."""
    directives = (part.strip().partition(" ") for part in response.headers["Content-Security-Policy"].split(";"))
    policy = {name: sources for name, _, sources in directives}
    assert "'unsafe-inline'" not in policy["script-src"] and "*" not in policy["script-src"]
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    return policy


def assert_inline_scripts_carry_the_nonce(page: str, policy: dict[str, str]) -> None:
    """Every script a browser would run from the page itself is allowed by the policy, so the
    dashboard still works under it (`text/template` blocks are data, not script)."""
    inline = [attrs for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
              if "src=" not in attrs and "text/template" not in attrs and body.strip()]  # fmt: skip
    assert inline, "the dashboard's pages have their inline script"
    for attrs in inline:
        nonce = re.search(r'nonce="([^"]+)"', attrs)
        assert nonce and f"'nonce-{nonce.group(1)}'" in policy["script-src"].split(), attrs


def test_client_markup_reaches_no_dashboard_page_or_data_unescaped(stack):
    job = failed_job_carrying(stack, PAYLOAD)
    pages = ["", "0/view/queues", "0/view/workers", "0/view/jobs/default/failed/8/asc/1", f"0/view/job/{job['id']}"]
    data = ["0/data/queues.json", "0/data/workers.json", "0/data/jobs/default/failed/8/asc/1.json",
            f"0/data/job/{job['id']}.json"]  # fmt: skip
    answers = {path: dashboard(stack, path) for path in pages + data}
    for path, response in answers.items():
        assert response.status_code == 200, (path, response.text)
        # Not in the page, nor in the JSON its scripts put into the page with innerHTML.
        assert "<img" not in response.text and 'onerror="' not in response.text, path
    for path, response in answers.items():
        policy = assert_strict_headers(response)
        if path in pages:
            assert_inline_scripts_carry_the_nonce(response.text, policy)
    # The data is all there, as text: unescaped, it is what the client sent.
    info = dashboard(stack, f"0/data/job/{job['id']}.json").json()
    assert "&lt;img src=x onerror=" in info["metadata"]
    assert json.loads(html.unescape(info["metadata"]))["metadata"] == {"n": PAYLOAD, "<i>k</i>": "v"}
    listed = dashboard(stack, "0/data/jobs/default/failed/8/asc/1.json").json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["exc_info"]


def test_every_dashboard_answer_has_the_strict_headers(stack):
    for response in (
        dashboard(stack, "", auth=None),  # 401
        dashboard(stack, "no/such/page"),  # 404
        dashboard(stack, "static/js/jquery-3.5.1.min.js"),
        dashboard(stack, "0/data/queues.json"),
    ):
        assert_strict_headers(response)


def test_a_queue_name_in_the_url_is_no_script(stack):
    # The jobs page put the queue name from its URL into a JavaScript string unescaped.
    name = "x');alert(1);('"
    page = dashboard(stack, f"0/view/jobs/{name}/queued/8/asc/1")
    assert page.status_code == 200
    assert "alert(1);('" not in page.text and "alert(1);(\\u0027" in page.text


# --- CSRF: actions only by POST from the dashboard's own pages ---------------------------

ACTIONS = ["queue/default/failed/empty", "requeue/default", "queue/default/compact", "job/{id}/requeue",
           "job/{id}/delete"]  # fmt: skip


def failed_ids(api: str) -> list[str]:
    return [j["id"] for j in dashboard(api, "0/data/jobs/default/failed/8/asc/1.json").json()["jobs"]]


def test_cross_site_actions_are_refused_and_change_nothing(stack):
    job = failed_job_carrying(stack, "plain")
    foreign = [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": stack, "Sec-Fetch-Site": "cross-site"},  # the browser's word wins
        {"Origin": stack, "Sec-Fetch-Site": "same-site"},
        {},  # neither: no browser sends a POST like that
    ]
    for headers in foreign:
        for action in ACTIONS:
            response = dashboard(stack, action.format(id=job["id"]), method="POST", headers=headers)
            assert_json_error(response, 403)
    # The old requeue-all on GET, a link away from any page: refused, whatever the headers.
    refused = dashboard(stack, "requeue/default", headers=same_origin(stack))
    assert_json_error(refused, 405)
    assert refused.headers["Allow"] == "POST"

    assert failed_ids(stack) == [job["id"]]
    assert get(stack, job["id"])["status"] == "failed"

    # From the dashboard's own pages (a browser's Sec-Fetch-Site, or Origin alone over plain HTTP).
    emptied = dashboard(stack, "queue/default/failed/empty", method="POST", headers={"Sec-Fetch-Site": "same-origin"})
    assert emptied.status_code == 200 and emptied.json() == {"status": "OK"}
    assert failed_ids(stack) == []
