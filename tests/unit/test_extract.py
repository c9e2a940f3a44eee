"""service/documents/extract.py: text and pages of PDF, DOCX and HTML, and bad documents that say why."""

from __future__ import annotations

import re

import pytest

from service.documents import formats
from service.documents.extract import NO_TEXT_LAYER, DocumentError, extract, inspect_pdf
from tests import documents

LIMITS = {"max_pages": 100, "max_unpacked_bytes": 5_000_000, "max_characters": 1_000_000}


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
        extract(data, media_type, max_pages=4, max_unpacked_bytes=5_000_000, max_characters=1_000_000)


def test_docx_and_html_text() -> None:
    assert extract(documents.docx(["First paragraph", "Second"]), formats.DOCX, **LIMITS).text == (
        "First paragraph\nSecond"
    )
    html = extract(documents.HTML_PAGE.encode(), formats.HTML, **LIMITS).text
    assert html == "Quarterly report\nRevenue grew & costs fell.\nFirst point\nSecond point"


def test_docx_text_is_read_once_however_paragraphs_nest() -> None:
    nested = documents.nested_paragraphs_docx(5, "ab")
    assert extract(nested, formats.DOCX, **LIMITS).text == "ab\nab\nab\nab\nab"


def test_docx_past_the_depth_or_the_text_bound_is_refused() -> None:
    with pytest.raises(DocumentError, match="deeper than 256 levels"):
        extract(documents.nested_paragraphs_docx(300), formats.DOCX, **LIMITS)
    with pytest.raises(DocumentError, match=r"longer than 10 characters \(MAX_DOCUMENT_CHARACTERS\)"):
        extract(documents.docx(["eleven char"]), formats.DOCX, **{**LIMITS, "max_characters": 10})
    with pytest.raises(DocumentError, match="MAX_DOCUMENT_CHARACTERS"):
        extract(b"eleven char", formats.TEXT, **{**LIMITS, "max_characters": 10})
    with pytest.raises(DocumentError, match="corrupt or unreadable"):
        extract(documents.docx_with_bad_utf8_name(), formats.DOCX, **LIMITS)
