"""Signals between the API, the scheduler and the process running a job.

- cancel request: set by the API, read by the worker running the job every tick;
- lease: kept alive by the worker running the job; a started job without one has lost
  its worker;
- completion marker: set once, by the first run that finishes, so a job that ran twice
  ends once.
"""

from __future__ import annotations

LEASE_TTL_S = 15  # a running job is presumed lost this long after its last sign of life


def cancel_key(job_id: str) -> str:
    return f"llmjobs:cancel:{job_id}"


def lease_key(job_id: str) -> str:
    return f"llmjobs:lease:{job_id}"


def completed_key(job_id: str) -> str:
    return f"llmjobs:completed:{job_id}"
