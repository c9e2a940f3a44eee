"""Recognising uploads by content, extracting their text, cutting it into chunks, and the
child process that extraction runs in (killed at its time limit)."""

from __future__ import annotations

import asyncio
import os
import re
import time

import pytest

from service.documents import formats
from service.documents.analyses import BUILT_IN, InvalidOutput, parse_output
from service.documents.chunks import estimate_tokens, split_text
from service.documents.extract import NO_TEXT_LAYER, DocumentError, extract, inspect_pdf
from service.documents.isolation import IsolatedTimeout, run_isolated
from tests import documents

LIMITS = {"max_pages": 100, "max_unpacked_bytes": 5_000_000}


def test_formats_are_told_by_content_not_by_name() -> None:
    assert formats.sniff(documents.pdf([["hi"]]), "notes.txt", "text/plain") == formats.PDF
    assert formats.sniff(documents.docx(["hi"]), "scan.pdf", "application/pdf") == formats.DOCX
    assert formats.sniff(documents.HTML_PAGE.encode(), "page.txt") == formats.HTML
    assert formats.sniff(b"# Title\n\nSome *text*.\n", "notes.md") == formats.MARKDOWN
    assert formats.sniff(b"# Title\n\n- one\n- two\n") == formats.MARKDOWN
    assert formats.sniff("Plain words, caf\u00e9.".encode()) == formats.TEXT


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"PK\x03\x04 not really a zip", b"\x00\x01\x02binary", b""],
    ids=["png", "zip", "binary", "empty"],
)
def test_a_file_lying_about_its_type_is_refused(data: bytes) -> None:
    with pytest.raises(formats.UnsupportedDocument):
        formats.sniff(data, "report.pdf", "application/pdf")


def test_pdf_text_and_pages() -> None:
    data = documents.pdf(documents.report_pages(3, lines_per_page=5))
    extracted = extract(data, formats.PDF, **LIMITS)
    assert extracted.pages == 3
    assert "Page 3 line 5" in extracted.text and "Page 1 line 1" in extracted.text
    assert inspect_pdf(data, max_pages=3).pages == 3


@pytest.mark.parametrize(
    ("data", "media_type", "message"),
    [
        (documents.encrypted_pdf(), formats.PDF, "encrypted"),
        (documents.image_only_pdf(), formats.PDF, NO_TEXT_LAYER),
        (documents.pdf([["x"]] * 5), formats.PDF, "5 pages; at most 4"),
        (b"%PDF-1.4\n garbage", formats.PDF, "corrupt"),
        (documents.docx_bomb(6_000_000), formats.DOCX, "zip bomb"),
        (documents.docx([""]), formats.DOCX, "holds no text"),
    ],
    ids=["encrypted", "image-only", "too-many-pages", "corrupt", "docx-bomb", "empty-docx"],
)
def test_bad_documents_say_why(data: bytes, media_type: str, message: str) -> None:
    with pytest.raises(DocumentError, match=re.escape(message)):
        extract(data, media_type, max_pages=4, max_unpacked_bytes=5_000_000)


def test_docx_and_html_text() -> None:
    assert extract(documents.docx(["First paragraph", "Second"]), formats.DOCX, **LIMITS).text == (
        "First paragraph\nSecond"
    )
    html = extract(documents.HTML_PAGE.encode(), formats.HTML, **LIMITS).text
    assert html == "Quarterly report\nRevenue grew & costs fell.\nFirst point\nSecond point"


def test_long_text_is_cut_into_chunks_that_keep_every_line() -> None:
    text = "\n\n".join(f"Paragraph {i}: " + "word " * 50 for i in range(40))
    chunks = split_text(text, max_tokens=500)
    assert len(chunks) > 1
    assert all(estimate_tokens(chunk) <= 500 for chunk in chunks)
    assert "\n\n".join(chunks) == text
    assert split_text("short", max_tokens=500) == ["short"]
    # One paragraph with no line breaks at all is cut at words.
    assert "".join(split_text("x" * 9000, max_tokens=500)) == "x" * 9000


def test_json_answers_are_checked() -> None:
    assert parse_output(BUILT_IN["topics"], '```json\n["a", "b"]\n```') == ["a", "b"]
    sentiment = '{"label": "mixed", "score": -0.2, "rationale": "why"}'
    assert parse_output(BUILT_IN["sentiment"], sentiment)["label"] == "mixed"
    with pytest.raises(InvalidOutput, match="not valid JSON"):
        parse_output(BUILT_IN["topics"], '["a", "b"')
    with pytest.raises(InvalidOutput, match="label"):
        parse_output(BUILT_IN["sentiment"], '{"label": "happy", "score": 0, "rationale": ""}')


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
