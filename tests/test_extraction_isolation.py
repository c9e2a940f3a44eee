"""The child process that text extraction runs in (service/documents/isolation.py): it
answers from another process and is killed at its time limit."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from service.documents import formats
from service.documents.extract import DocumentError, extract
from service.documents.isolation import IsolatedTimeout, run_isolated
from tests import documents

LIMITS = {"max_pages": 100, "max_unpacked_bytes": 5_000_000, "max_characters": 1_000_000}


def sleep_then_answer(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_isolated_call_answers_from_another_process_and_is_killed_at_its_limit() -> None:
    async def scenario() -> None:
        assert await run_isolated(sleep_then_answer, 0, timeout_s=30) != os.getpid()
        with pytest.raises(IsolatedTimeout):  # (a child left running would hold the test for 600 s)
            await run_isolated(sleep_then_answer, 600, timeout_s=0.5)
        with pytest.raises(DocumentError, match="encrypted"):
            await run_isolated(extract, documents.encrypted_pdf(), formats.PDF, **LIMITS, timeout_s=30)

    asyncio.run(scenario())
