"""Per-client submit limits and back-pressure, against the API under gunicorn (real Redis)."""

from __future__ import annotations

import requests

from tests.support.jobs import post_job
from tests.support.keys import ALICE, BOB


def post(api: str, headers: dict, priority: str = "default") -> requests.Response:
    return post_job(api, {"prompt": "hi", "priority": priority}, headers)


def assert_error(response: requests.Response, code: int) -> dict:
    assert response.status_code == code, response.text
    body = response.json()
    assert body["code"] == code and body["message"]
    assert float(response.headers["Retry-After"]) > 0
    return body


def test_each_client_has_its_own_submit_limit_with_headers(start_api, processes):
    api = start_api(RATE_LIMIT="3/minute", RATE_LIMIT_OVERRIDES="bob=1/minute")
    accepted = [post(api, ALICE) for _ in range(3)]
    assert [r.status_code for r in accepted] == [202, 202, 202]
    assert [r.headers["X-RateLimit-Remaining"] for r in accepted] == ["2", "1", "0"]
    assert accepted[0].headers["X-RateLimit-Limit"] == "3"
    assert "Retry-After" not in accepted[0].headers  # a 2xx has nothing to retry

    refused = post(api, ALICE)
    wait_s = assert_error(refused, 429) and refused.headers["Retry-After"]
    assert f"submit limit (RATE_LIMIT, 3); retry after {wait_s} seconds" in refused.json()["message"]
    assert 0 < int(wait_s) <= 60 and refused.headers["X-RateLimit-Remaining"] == "0"
    # bob has his own allowance (his override: 1/minute), untouched by alice's
    assert post(api, BOB).status_code == 202
    assert_error(post(api, BOB), 429)
    # reading is not limited
    assert requests.get(f"{api}/v1/jobs", headers=ALICE, timeout=10).status_code == 200
    # flask-limiter's early pass (before auth) reads the limit too: it must not fail and log
    api_log = "".join(processes.log_of(process) for name, process, _ in processes.started if name == "api")
    assert '"level": "ERROR"' not in api_log, api_log


def test_a_full_queue_answers_503_until_it_drains(start_api, redis_conn):
    api = start_api(QUEUE_MAX_DEPTH="2")
    assert [post(api, ALICE, "low").status_code for _ in range(2)] == [202, 202]
    assert "queue is full" in assert_error(post(api, ALICE, "low"), 503)["message"]
    assert post(api, ALICE, "high").status_code == 202  # another queue is not held up
    redis_conn.lpop("rq:queue:low")  # a worker takes one
    assert post(api, ALICE, "low").status_code == 202
