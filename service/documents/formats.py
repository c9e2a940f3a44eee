"""What an upload is, told by its content: a name or a declared type can lie.

PDF, DOCX, HTML, Markdown and plain text; anything else is refused (415).
"""

from __future__ import annotations

import io
import re
import zipfile

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"

_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)[\s>]", re.IGNORECASE | re.DOTALL)
_MARKDOWN_SIGNS = re.compile(r"^(#{1,6} |```|[-*] |\d+\. |> )|\]\(\S+\)", re.MULTILINE)
SNIFF_BYTES = 4096  # how much of the start a text sniff reads


class UnsupportedDocument(ValueError):
    """Not a format this service reads; the message says what it looks like."""


def sniff(data: bytes, filename: str = "", declared: str | None = None) -> str:
    """The upload's media type, from its bytes. The name and declared type only choose
    between Markdown and plain text, which look alike."""
    if not data:
        raise UnsupportedDocument("the file is empty")
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"PK\x03\x04"):
        if _is_docx(data):
            return DOCX
        raise UnsupportedDocument("a ZIP archive that is not a Word document (DOCX)")
    text = _as_text(data)
    if text is None:
        raise UnsupportedDocument(
            "not a PDF, DOCX, HTML, Markdown or text file (binary content)" + _claimed(filename, declared)
        )
    if _HTML_START.match(data[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf")):
        return HTML
    if (declared or "").split(";")[0].strip().lower() == MARKDOWN or filename.lower().endswith((".md", ".markdown")):
        return MARKDOWN
    return MARKDOWN if len(_MARKDOWN_SIGNS.findall(text[:SNIFF_BYTES])) >= 2 else TEXT


def decode_text(data: bytes) -> str:
    """Text content as str: UTF-8 (a BOM is dropped), else UTF-16 with a BOM."""
    text = _as_text(data)
    if text is None:
        raise UnsupportedDocument("the text is neither UTF-8 nor UTF-16")
    return text


def _as_text(data: bytes) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    # Control characters other than whitespace mark a binary file that happens to decode.
    sample = text[:SNIFF_BYTES]
    if any(ord(c) < 32 and c not in "\t\n\r\f" for c in sample):
        return None
    return text


def _is_docx(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except zipfile.BadZipFile:
        return False


def _claimed(filename: str, declared: str | None) -> str:
    claims = [c for c in (filename and f"named {filename!r}", declared and f"declared {declared!r}") if c]
    return f"; it was {' and '.join(claims)}" if claims else ""
