"""service/documents/chunks.py: a long text cut into chunks that keep every line."""

from __future__ import annotations

import pytest

from service.documents.chunks import CHARS_PER_TOKEN, split_text
from service.documents.extract import DocumentError


def test_long_text_is_cut_into_chunks_that_keep_every_line() -> None:
    text = "\n\n".join(f"Paragraph {i}: " + "word " * 50 for i in range(40))
    chunks = split_text(text, max_tokens=500)
    assert len(chunks) > 1
    assert all(len(chunk) <= 500 * CHARS_PER_TOKEN for chunk in chunks)  # within the token budget
    assert "\n\n".join(chunks) == text
    assert split_text("short", max_tokens=500) == ["short"]
    # One paragraph with no line breaks at all is cut at words.
    assert "".join(split_text("x" * 9000, max_tokens=500)) == "x" * 9000


def test_chunks_are_cut_in_linear_time_and_counted() -> None:
    text = "a " * 2_000_000  # quadratic cutting took minutes on this
    chunks = split_text(text, max_tokens=50_000)
    assert len(chunks) == 20 and " ".join(chunks) == text
    with pytest.raises(DocumentError, match="more than 19 chunks"):
        split_text(text, max_tokens=50_000, max_chunks=19)
