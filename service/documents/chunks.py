"""Cut a long text into pieces that fit the model's budget, at paragraph (else line,
else word) boundaries; nothing is dropped."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from service.documents.extract import DocumentError, Extracted, extract

CHARS_PER_TOKEN = 4  # a rough, conservative rule for English prose
SEPARATORS = ("\n\n", "\n", " ")  # the preferred cut first


def split_text(text: str, max_tokens: int, max_chunks: int | None = None) -> list[str]:
    """`text` as consecutive chunks of at most `max_tokens` (estimated) each, each ending at
    the last paragraph break that fits, else the last line break, else the last space,
    else anywhere; joined back they hold every character of the text but the separators
    cut at. Linear in the text's length: each chunk is found with a few `rfind`s over its
    own window. Past `max_chunks`, a DocumentError."""
    limit = max_tokens * CHARS_PER_TOKEN
    chunks: list[str] = []
    start = 0
    while len(text) - start > limit:
        if max_chunks is not None and len(chunks) >= max_chunks:
            raise _too_many(max_chunks, max_tokens)
        end, skip = _cut(text, start, start + limit)
        chunks.append(text[start:end])
        start = end + skip
    if start < len(text) or not chunks:
        chunks.append(text[start:])
    if max_chunks is not None and len(chunks) > max_chunks:
        raise _too_many(max_chunks, max_tokens)
    return chunks


def extract_chunks(data: bytes, media_type: str, *, chunk_tokens: int, max_chunks: int, **bounds: Any) -> Extracted:
    """`extract` and `split_text` in one go: what a document's extraction child does."""
    extracted = extract(data, media_type, **bounds)
    return replace(extracted, chunks=tuple(split_text(extracted.text, chunk_tokens, max_chunks)))


def _too_many(max_chunks: int, max_tokens: int) -> DocumentError:
    return DocumentError(
        f"the document's text needs more than {max_chunks} chunks of {max_tokens} tokens "
        "(MAX_DOCUMENT_CHUNKS, DOCUMENT_CHUNK_TOKENS)"
    )


def _cut(text: str, start: int, stop: int) -> tuple[int, int]:
    """Where the chunk from `start` ends (before `stop`), and how many separator characters
    follow it."""
    for separator in SEPARATORS:
        # A separator at `stop` itself still ends a chunk of exactly `limit` characters.
        found = text.rfind(separator, start + 1, stop + len(separator))
        if found > start:
            return found, len(separator)
    return stop, 0
