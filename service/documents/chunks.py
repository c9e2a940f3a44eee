"""Cut a long text into pieces that fit the model's budget, at paragraph (else line,
else word) boundaries; nothing is dropped."""

from __future__ import annotations

CHARS_PER_TOKEN = 4  # a rough, conservative rule for English prose


def estimate_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def split_text(text: str, max_tokens: int) -> list[str]:
    """`text` as consecutive chunks of at most `max_tokens` (estimated) each; joined
    back they hold every character of the text but the separators cut at."""
    limit = max_tokens * CHARS_PER_TOKEN
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, limit):
        if current and len(current) + 2 + len(piece) > limit:
            chunks.append(current)
            current = piece
        else:
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _pieces(text: str, limit: int) -> list[str]:
    """Paragraphs, each cut further (lines, words, characters) when longer than `limit`."""
    pieces: list[str] = []
    for paragraph in text.split("\n\n"):
        pieces += _cut(paragraph, limit, ("\n", " "))
    return pieces


def _cut(text: str, limit: int, separators: tuple[str, ...]) -> list[str]:
    if len(text) <= limit:
        return [text]
    if not separators:
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    separator, rest = separators[0], separators[1:]
    out: list[str] = []
    current = ""
    for part in text.split(separator):
        for piece in _cut(part, limit, rest):
            if current and len(current) + len(separator) + len(piece) > limit:
                out.append(current)
                current = piece
            else:
                current = f"{current}{separator}{piece}" if current else piece
    if current:
        out.append(current)
    return out
