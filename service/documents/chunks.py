"""Cut a long text into pieces that fit the model's budget, at paragraph (else line,
else word) boundaries; nothing is dropped."""

from __future__ import annotations

CHARS_PER_TOKEN = 4  # a rough, conservative rule for English prose


def split_text(text: str, max_tokens: int) -> list[str]:
    """`text` as consecutive chunks of at most `max_tokens` (estimated) each, cut at
    paragraphs, else lines, else words, else anywhere; joined back they hold every
    character of the text but the separators cut at."""
    return _cut(text, max_tokens * CHARS_PER_TOKEN, ("\n\n", "\n", " "))


def _cut(text: str, limit: int, separators: tuple[str, ...]) -> list[str]:
    """Pieces of `text` split at the first separator (each cut further with the next ones
    when too long), packed back together up to `limit` characters."""
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
