"""What an upload is, told by its content: a name or a declared type can lie.

PDF, DOCX, HTML, Markdown and plain text; anything else is refused (415).
"""

from __future__ import annotations

import io
import re
import struct
import zipfile

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"

# Matched at one position, with no repetition of groups: the comments before it are skipped
# by `_skip_comments`, a loop of `find`s (a regex repeating `(<!--.*?-->\s*)*` backtracks
# exponentially on `<!---->` repeated: 4 KB of them held an API process for a minute).
_HTML_TAG = re.compile(rb"<(!doctype\s+html|html|head|body)[\s>]", re.IGNORECASE)
_SPACE = re.compile(rb"\s*")
_MARKDOWN_SIGNS = re.compile(r"^(#{1,6} |```|[-*] |\d+\. |> )|\]\(\S+\)", re.MULTILINE)
SNIFF_BYTES = 4096  # how much of the start a text sniff reads
# A Word document has tens to a few hundred parts (a directory of a few KB): the directory's
# size, read from the archive's last bytes, is checked before the directory is parsed, which
# costs CPU per entry (400,000 entries in an 18 MB upload: 2.4 s).
MAX_ZIP_DIRECTORY_BYTES = 256 * 1024
_END_OF_DIRECTORY = struct.Struct("<4s4H2LH")  # the record's fixed part, signature PK\x05\x06


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
    if _looks_like_html(data[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf")):
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


def _looks_like_html(start: bytes) -> bool:
    """Whitespace and comments, then an html, head or body tag or an HTML doctype."""
    return _HTML_TAG.match(start, _skip_comments(start)) is not None


def _skip_comments(text: bytes) -> int:
    """Where the first thing that is not whitespace or an `<!-- -->` comment starts: linear
    in the length of `text`."""
    position = _skip_space(text, 0)
    while text.startswith(b"<!--", position):
        end = text.find(b"-->", position + 4)
        if end < 0:
            return position
        position = _skip_space(text, end + 3)
    return position


def _skip_space(text: bytes, position: int) -> int:
    return _SPACE.match(text, position).end()  # type: ignore[union-attr]  # `\s*` always matches


def _is_docx(data: bytes) -> bool:
    if zip_directory_bytes(data) > MAX_ZIP_DIRECTORY_BYTES:
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except zipfile.BadZipFile:
        return False
    # What else zipfile raises on a malformed directory: a name flagged UTF-8 that is not,
    # a truncated record.
    except (UnicodeDecodeError, ValueError, EOFError, struct.error, OSError) as exc:
        raise UnsupportedDocument(f"a ZIP archive that cannot be read ({type(exc).__name__}: {exc})") from None


def zip_directory_bytes(data: bytes) -> int:
    """The size of its central directory a ZIP archive's end record declares (0 when there is
    no such record), read from its last 64 KiB without parsing the directory. zipfile reads
    the directory by that size, whatever entry count the record gives."""
    tail_start = max(0, len(data) - (_END_OF_DIRECTORY.size + 0xFFFF))
    found = data.rfind(b"PK\x05\x06", tail_start)
    if found < 0 or found + _END_OF_DIRECTORY.size > len(data):
        return 0
    size = _END_OF_DIRECTORY.unpack_from(data, found)[5]
    return 1 << 32 if size == 0xFFFFFFFF else size  # ZIP64: the size is elsewhere, and no DOCX needs it


def _claimed(filename: str, declared: str | None) -> str:
    claims = [c for c in (filename and f"named {filename!r}", declared and f"declared {declared!r}") if c]
    return f"; it was {' and '.join(claims)}" if claims else ""
