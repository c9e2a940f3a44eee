"""Every process logs JSON lines that name the job, client, queue, attempt and outcome,
and never an API key or prompt text."""

from __future__ import annotations

import json

import requests

from tests.support.jobs import submit, wait_until_finished
from tests.support.keys import ALICE, ALICE_KEY, BOB_KEY

SECRET_PROMPT = "the-secret-launch-code-4711"


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # fails on any line that is not JSON


def test_logs_are_json_with_job_context_and_no_secrets(start_api, start_worker, processes):
    api = start_api(ACCESS_LOG="1")
    start_worker()
    ok = submit(api, {"prompt": f"{SECRET_PROMPT} [[fake: tokens=3]]"})
    bad = submit(api, {"prompt": f"{SECRET_PROMPT} [[fake: error=400]]"})
    assert wait_until_finished(api, ok["id"])["status"] == "succeeded"
    assert wait_until_finished(api, bad["id"])["status"] == "failed"
    processes.stop_all()  # flush and close every log

    logs = {name: processes.log_of(process) for name, process, _ in processes.started}
    for name, text in logs.items():
        records = json_lines(text)
        assert records and all({"time", "level", "logger", "message", "process"} <= set(r) for r in records), name
        for secret in (ALICE_KEY, BOB_KEY, SECRET_PROMPT):
            assert secret not in text, f"{name} log holds {secret!r}"

    ended = {r["job_id"]: r for r in json_lines(logs["worker"]) if r["message"] == "attempt ended"}
    assert ended[ok["id"]] | {"outcome": "succeeded"} == ended[ok["id"]]
    assert {k: ended[ok["id"]][k] for k in ("client", "queue", "attempt", "process")} == {
        "client": "alice", "queue": "default", "attempt": 1, "process": "worker",
    }  # fmt: skip
    assert (ended[bad["id"]]["outcome"], ended[bad["id"]]["error_type"]) == ("failed", "invalid_request_error")
    assert any(r["logger"] == "granian.access" for r in json_lines(logs["api"]))


def test_sampled_access_lines_are_every_error_and_a_share_of_the_rest(start_api, processes):
    api = start_api(ACCESS_LOG="0.000001", WEB_CONCURRENCY="1")  # one success line in a million
    for _ in range(20):
        assert requests.get(f"{api}/v1/jobs", headers=ALICE, timeout=10).status_code == 200
    errors = [
        requests.get(f"{api}/v1/jobs/{'0' * 32}", headers=ALICE, timeout=10).status_code,
        requests.post(f"{api}/v1/jobs", json={"prompt": ""}, headers=ALICE, timeout=10).status_code,
        requests.get(f"{api}/v1/jobs", timeout=10).status_code,
    ]
    assert errors == [404, 422, 401]
    processes.stop_all()

    records = json_lines(processes.log_of(processes.started[-1][1]))
    lines = [r["message"] for r in records if r["logger"] == "granian.access"]
    assert [line.split('"')[2].split()[0] for line in lines] == ["404", "422", "401"], lines


def test_access_log_off_writes_no_request_lines(start_api, processes):
    api = start_api(ACCESS_LOG="0", WEB_CONCURRENCY="1")
    job = submit(api, {"prompt": "hi"})  # a request the app itself logs nothing of
    assert job["status"] == "queued"
    processes.stop_all()

    records = json_lines(processes.log_of(processes.started[-1][1]))
    assert any(r["logger"] == "_granian" for r in records)  # the server's own lines are still there
    assert not any(r["logger"] == "granian.access" for r in records)
