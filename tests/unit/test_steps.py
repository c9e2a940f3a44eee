"""service/documents/steps.py: a document job's steps, and how much of its work is done."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.documents.steps import EXTRACT, new_steps, percent_done
from service.jobs.storage.record import JobRecord


@dataclass
class Meta:
    meta: dict[str, Any] = field(default_factory=dict)


def record_with(steps: list, partials: dict | None = None) -> JobRecord:
    record = JobRecord(Meta())
    record.steps = steps
    if partials is not None:
        record.partials = partials
    return record


def test_extraction_comes_first_then_one_pending_step_per_analysis():
    steps = new_steps(["summary", "topics"])
    assert [step["name"] for step in steps] == [EXTRACT, "summary", "topics"]
    assert all(step["status"] == "pending" and step["attempts"] == 0 and step["error"] is None for step in steps)
    assert steps[1]["usage"] is not steps[2]["usage"]  # each step counts its own tokens


def test_work_done_is_counted_in_calls():
    steps = new_steps(["summary", "topics"])
    # 3 calls per analysis (two chunks and the combining one) plus the extraction: 7 in all.
    assert percent_done(record_with(steps), calls_per_analysis=3) == 0
    steps[0]["status"] = "succeeded"
    assert percent_done(record_with(steps), calls_per_analysis=3) == 100 // 7
    # A chunk answered counts; an analysis that ended counts in full, failed or not.
    assert percent_done(record_with(steps, {"summary": ["first chunk"]}), calls_per_analysis=3) == 200 // 7
    steps[1]["status"], steps[2]["status"] = "succeeded", "failed"
    assert percent_done(record_with(steps, {"summary": ["first chunk"]}), calls_per_analysis=3) == 100
