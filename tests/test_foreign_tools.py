"""A job rewritten by RQ's own `rq requeue` run without `--serializer` (it pickles the
job's meta): the API still finds it, shows it as failed with a clear error, lists it, and
its dashboard page opens. Real `rq` command, gunicorn and Redis."""

from __future__ import annotations

import subprocess

import requests
from rq import Queue
from rq.job import Job, JobStatus

from service.jobs.storage.queues import SERIALIZER
from tests.support.dashboard import OPERATOR, dashboard
from tests.support.jobs import get, submit
from tests.support.keys import ALICE, BOB
from tests.support.paths import BIN, ROOT


def fail_by_hand(redis_conn, job_id: str) -> None:
    """What a worker does to a job that failed (no worker runs in this test)."""
    job = Job.fetch(job_id, connection=redis_conn, serializer=SERIALIZER)
    redis_conn.lrem("rq:queue:default", 0, job_id)
    job.set_status(JobStatus.FAILED)
    Queue("default", connection=redis_conn, serializer=SERIALIZER).failed_job_registry.add(job, ttl=3600)


def test_a_job_requeued_by_rq_without_the_json_serializer_reads_as_failed(start_api, redis_conn, redis_server):
    api = start_api(**OPERATOR)
    job, other = submit(api, {"prompt": "one"}), submit(api, {"prompt": "two"})
    fail_by_hand(redis_conn, job["id"])

    requeue = [str(BIN / "rq"), "requeue", "--url", redis_server.url, "--queue", "default", job["id"]]
    done = subprocess.run(requeue, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert redis_conn.hget(f"rq:job:{job['id']}", "meta").startswith(b"\x80")  # pickled now

    read = get(api, job["id"])
    assert read["status"] == "failed"
    assert read["error"]["type"] == "unreadable_record"
    assert "--serializer rq.serializers.JSONSerializer" in read["error"]["message"]
    listed = requests.get(f"{api}/v1/jobs", headers=ALICE, timeout=10).json()["data"]
    assert [(j["id"], j["status"]) for j in listed] == [(other["id"], "queued"), (job["id"], "failed")]
    failed = requests.get(f"{api}/v1/jobs", params={"status": "failed"}, headers=ALICE, timeout=10).json()
    assert [j["id"] for j in failed["data"]] == [job["id"]]
    assert requests.get(f"{api}/v1/jobs/{job['id']}", headers=BOB, timeout=10).status_code == 404  # still alice's
    for action in ("cancel", "retry"):
        response = requests.post(f"{api}/v1/jobs/{job['id']}/{action}", headers=ALICE, timeout=10)
        assert response.status_code == 409 and response.json()["code"] == 409, response.text

    page = dashboard(api, f"0/view/job/{job['id']}")
    assert page.status_code == 200, page.text[:300]
    data = dashboard(api, f"0/data/job/{job['id']}.json")
    assert data.status_code == 200, data.text[:300]
    assert data.json()["id"] == job["id"]
