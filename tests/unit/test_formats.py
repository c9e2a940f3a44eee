"""service/documents/formats.py: an upload is recognised by its content, not by its name."""

from __future__ import annotations

import pytest

from service.documents import formats
from tests import documents


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


def test_html_is_told_after_comments_without_backtracking() -> None:
    assert formats.sniff(b"<!-- a --> \n<!---->\n<!DOCTYPE html><p>x") == formats.HTML
    assert formats.sniff(b"<!-- <html> -->plain") == formats.TEXT
    # Exponential for the old regex (2^n): 40 comments would have taken days.
    assert formats.sniff(documents.html_behind_comments(40)) == formats.TEXT


def test_a_zip_too_large_to_be_a_docx_or_unreadable_is_refused_without_a_crash() -> None:
    with pytest.raises(formats.UnsupportedDocument, match="not a Word document"):
        formats.sniff(documents.zip_with_entries(20_000))  # a 1 MB directory: not parsed
    with pytest.raises(formats.UnsupportedDocument, match="cannot be read"):
        formats.sniff(documents.docx_with_bad_utf8_name())
