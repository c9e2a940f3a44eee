"""A document job's steps: `extract`, then one per analysis, each with its status,
attempts (LLM calls), usage, cost and error, as the job's meta holds them."""

from __future__ import annotations

from typing import Any

EXTRACT = "extract"
STEP_PENDING, STEP_RUNNING, STEP_SUCCEEDED, STEP_FAILED, STEP_CANCELED = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "canceled",
)


def new_steps(analysis_names: list[str]) -> list[dict[str, Any]]:
    return [_step(EXTRACT), *(_step(name) for name in analysis_names)]


def _step(name: str) -> dict[str, Any]:
    usage = {"input_tokens": 0, "output_tokens": 0}
    return {"name": name, "status": STEP_PENDING, "attempts": 0, "usage": usage, "cost_usd": None, "error": None}


def percent_done(meta: dict[str, Any], calls_per_analysis: int) -> int:
    """Work done, in calls: extraction counts as one, each analysis as the calls it takes
    (one per chunk, one to combine); a step that has ended counts in full."""
    extract_step, *analysis_steps = meta["steps"]
    total = 1 + calls_per_analysis * len(analysis_steps)
    done = int(extract_step["status"] == STEP_SUCCEEDED)
    for step in analysis_steps:
        if step["status"] in (STEP_SUCCEEDED, STEP_FAILED):
            done += calls_per_analysis
        else:
            done += len(meta.get("partials", {}).get(step["name"], ()))
    return min(100, done * 100 // total)
