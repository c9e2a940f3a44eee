"""A document job's steps: `extract`, then one per analysis, each with its status,
attempts (LLM calls), usage, cost and error, as the job's record holds them."""

from __future__ import annotations

from typing import Final

from service.jobs.storage.record import JobRecord, Step, StepStatus

EXTRACT = "extract"
# A step's statuses, the names every module compares and sets them by.
STEP_PENDING: Final[StepStatus] = "pending"
STEP_RUNNING: Final[StepStatus] = "running"
STEP_SUCCEEDED: Final[StepStatus] = "succeeded"
STEP_FAILED: Final[StepStatus] = "failed"
STEP_CANCELED: Final[StepStatus] = "canceled"


def new_steps(analysis_names: list[str]) -> list[Step]:
    return [_step(EXTRACT), *(_step(name) for name in analysis_names)]


def _step(name: str) -> Step:
    return {
        "name": name, "status": STEP_PENDING, "attempts": 0, "usage": {"input_tokens": 0, "output_tokens": 0},
        "cost_usd": None, "error": None,
    }  # fmt: skip


def percent_done(record: JobRecord, calls_per_analysis: int) -> int:
    """Work done, in calls: extraction counts as one, each analysis as the calls it takes
    (one per chunk, one to combine); a step that has ended counts in full."""
    extract_step, *analysis_steps = record.steps
    total = 1 + calls_per_analysis * len(analysis_steps)
    done = int(extract_step["status"] == STEP_SUCCEEDED)
    partials = record.partials
    for step in analysis_steps:
        if step["status"] in (STEP_SUCCEEDED, STEP_FAILED):
            done += calls_per_analysis
        else:
            done += len(partials.get(step["name"], ()))
    return min(100, done * 100 // total)
