"""Where a document job's bytes live in Redis: the upload until its text is extracted
(a PDF read natively: for the job's lifetime), then the text, for the job's lifetime, so
that a retry re-runs failed analyses without extracting again."""

from __future__ import annotations


def upload_key(job_id: str) -> str:
    return f"llmjobs:upload:{job_id}"


def text_key(job_id: str) -> str:
    return f"llmjobs:doctext:{job_id}"
