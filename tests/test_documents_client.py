"""`JobsClient.analyze` and `llmjobs analyze FILE --wait` (clients/python), against the real
stack (gunicorn, worker.py, the fake Anthropic server)."""

from __future__ import annotations

import asyncio
import json

from llmjobs import APIError, AsyncJobsClient, JobsClient
from llmjobs.cli import document_bar

from tests import documents
from tests.support.cli import run_cli
from tests.support.keys import ALICE_KEY


def test_document_bar_names_the_running_step() -> None:
    job = {"status": "running", "progress": {"percent": 40}, "steps": [{"name": "summary", "status": "running"}]}
    assert document_bar(job, width=10) == "[####......]  40% summary"
    ended = {
        "status": "succeeded",
        "progress": {"percent": 100},
        "steps": [{"name": "\x1b[31mx", "status": "succeeded"}],
    }
    assert document_bar(ended, width=4) == "[####] 100% succeeded"


def test_client_analyze_and_cli_analyze_wait(start_api, start_worker, tmp_path) -> None:
    api = start_api()
    start_worker()
    memo = tmp_path / "memo.docx"
    memo.write_bytes(documents.docx(["The budget grew.", "Hiring is paused."]))
    with JobsClient(api, ALICE_KEY) as client:
        options = {"analyses": ["summary", "topics"], "metadata": {"team": "ops"}, "max_tokens": 200}
        job = client.analyze(memo, **options, idempotency_key="memo-1")
        assert job.raw["kind"] == "document" and job.raw["document"]["filename"] == "memo.docx"
        assert client.analyze(memo, **options, idempotency_key="memo-1").id == job.id  # resent: the same job
        assert job.metadata == {"team": "ops"}
        done = client.wait(job.id, timeout=60)
        assert done.status == "succeeded", done.raw
        assert set(done.raw["result"]["analyses"]) == {"summary", "topics"}
        liar = tmp_path / "photo.pdf"
        liar.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
        try:
            client.analyze(liar)
        except APIError as exc:
            assert exc.status_code == 415
        else:
            raise AssertionError("a PNG named .pdf was accepted")

    async def analyze_async() -> None:
        async with AsyncJobsClient(api, ALICE_KEY) as client:
            job = await client.analyze(memo, analyses=[{"name": "gist", "prompt": "One line.", "output": "text"}])
            done = await client.wait(job.id, timeout=60)
            assert done.status == "succeeded" and list(done.raw["result"]["analyses"]) == ["gist"], done.raw

    asyncio.run(analyze_async())

    page = tmp_path / "page.html"
    page.write_text(documents.HTML_PAGE)
    keyed = ("--idempotency-key", "page-1", "--metadata", "source=cli")
    finished = run_cli(
        "analyze", str(page), "--analyses", "key_points", *keyed, "--wait", "--json", url=api, timeout=90
    )
    assert finished.returncode == 0, finished.stderr
    job = json.loads(finished.stdout)
    assert job["status"] == "succeeded" and len(job["result"]["analyses"]["key_points"]["output"]) == 3
    assert job["metadata"] == {"source": "cli"}
    again = run_cli("analyze", str(page), "--analyses", "key_points", *keyed, "--json", url=api)
    assert again.returncode == 0 and json.loads(again.stdout)["id"] == job["id"], again  # the first job, again
    assert "100%" in finished.stderr  # the progress line (one line per change off a terminal)
    shown = run_cli("analyze", str(page), "--analyses", "topics", "--wait", url=api, timeout=90)
    assert shown.returncode == 0 and "topics: [" in shown.stdout, shown
    missing = run_cli("analyze", str(tmp_path / "nope.pdf"), url=api)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
