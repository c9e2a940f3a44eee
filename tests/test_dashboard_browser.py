"""The dashboard in a real browser (headless Chromium, which `make install` installs): a
failed job whose metadata carries the issue's script opens as text, the script does not
run, and the page still works under the Content-Security-Policy (its data is filled in by
its own, nonce-carrying script)."""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import urlsplit

from rq import Queue

from tests.support.dashboard import AUTH, OPERATOR, failed_job_carrying
from tests.support.fake_server import FAST_RETRIES
from tests.support.jobs import get, submit

# Run on the dashboard's origin with the operator's credentials, it would empty `low`.
PAYLOAD = "<img src=x onerror=\"fetch('/dashboard/queue/low/queued/empty',{method:'POST'})\">"


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran (virtual time: its XHRs answer, its timers fire)."""
    binary = shutil.which("chromium")
    assert binary, "chromium is not installed (make install installs it)"
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_issue_payload_shows_as_text_and_does_not_run(start_api, start_worker, redis_conn):
    api = start_api(**OPERATOR, **FAST_RETRIES)
    start_worker("high", "default", **FAST_RETRIES)  # nothing takes `low`: the canary waits there
    canary = submit(api, {"prompt": "canary", "priority": "low"})
    job = failed_job_carrying(api, PAYLOAD)

    parts = urlsplit(api)
    dom = rendered_dom(f"http://{AUTH[0]}:{AUTH[1]}@{parts.netloc}/dashboard/0/view/job/{job['id']}")

    # Nothing ran the client's script: the canary is still queued.
    assert Queue("low", connection=redis_conn).get_job_ids() == [canary["id"]]
    assert get(api, canary["id"])["status"] == "queued"
    # The page's script ran under the policy: it filled #job-data from the job's JSON ...
    filled = re.search(r'<div id="job-data" class="row">(.*?)</div>\s*<script', dom, re.S)
    assert filled and "<strong>Status</strong>" in filled.group(1), dom[-3000:]
    assert "failed" in filled.group(1)
    # ... with the client's markup as text, not as an element.
    assert "&lt;img src=x onerror=" in filled.group(1)
    assert "<img" not in filled.group(1)
