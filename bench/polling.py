"""What the bench scripts share: waiting for jobs to end by polling `GET /v1/jobs/{id}`."""

from __future__ import annotations

import time
from datetime import datetime

import requests

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


def wait_for_ends(
    session: requests.Session, url: str, job_ids: list[str], *, interval_s: float, deadline: float = float("inf")
) -> dict[str, dict]:
    """Each job's resource once it has ended (polled every `interval_s`), by id; those still
    going at `deadline` (epoch s) are left out."""
    ended: dict[str, dict] = {}
    while len(ended) < len(job_ids) and time.time() < deadline:
        for job_id in job_ids:
            if job_id not in ended:
                job = session.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
                if job["status"] in TERMINAL:
                    ended[job_id] = job
        time.sleep(interval_s)
    return ended


def epoch_s(timestamp: str) -> float:
    """An API timestamp (ISO 8601, `Z` for UTC) in epoch seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
