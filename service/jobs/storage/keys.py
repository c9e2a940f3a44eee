"""The names of the Redis keys the service writes beside RQ's own (ARCHITECTURE.md §3)."""

from __future__ import annotations


def live_text_key(job_id: str) -> str:
    """The text the running attempt has streamed so far (its meta holds the text only
    once the attempt has ended)."""
    return f"llmjobs:text:{job_id}"
