"""Text out of a document. Runs in a child process (see `isolation`), never on the
worker's event loop: a hostile or huge file may take long or much memory, and the child
is killed at the time limit.

Libraries: pypdf for PDF (pure Python, maintained, reads encryption flags and the page
tree without rendering); DOCX and HTML with the standard library (zipfile, defusedxml's
ElementTree, html.parser), which lets every read be bounded (a zip bomb stops at the limit).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import IO

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from service.documents.formats import DOCX, HTML, MARKDOWN, PDF, TEXT, UnsupportedDocument, decode_text

WORD_NS = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
PARAGRAPH, TEXT_RUN, TAB, BREAKS = f"{WORD_NS}p", f"{WORD_NS}t", f"{WORD_NS}tab", (f"{WORD_NS}br", f"{WORD_NS}cr")
# How deep a DOCX's document.xml may nest: Word's own files stay under ~30 levels (tables in
# tables); a file of 20,000 nested paragraphs is an attack, refused as soon as it is seen.
MAX_XML_DEPTH = 256
NO_TEXT_LAYER = "the PDF has no extractable text (a scan or images only); try `extraction: native`"


class DocumentError(Exception):
    """The document cannot be read; the message is for a person."""


@dataclass(frozen=True)
class Extracted:
    text: str  # empty when only inspected (native extraction)
    pages: int | None
    chunks: tuple[str, ...] = ()  # the text cut for analysis (chunks.extract_chunks)


class BoundedText:
    """Text built from parts that stops with a DocumentError past `max_characters`: the
    bound holds while the text is made, not after (a 5 KB DOCX once made 300 MB)."""

    def __init__(self, max_characters: int) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.max_characters = max_characters

    def add(self, part: str) -> None:
        self.length += len(part)
        if self.length > self.max_characters:
            raise too_long(self.max_characters)
        self.parts.append(part)

    def text(self) -> str:
        return "".join(self.parts)


def too_long(max_characters: int) -> DocumentError:
    return DocumentError(f"the document's text is longer than {max_characters} characters (MAX_DOCUMENT_CHARACTERS)")


def extract(data: bytes, media_type: str, *, max_pages: int, max_unpacked_bytes: int, max_characters: int) -> Extracted:
    """The document's text (at most `max_characters`) and page count; raises DocumentError
    for a bad document."""
    if media_type == PDF:
        return _pdf(data, max_pages, max_characters=max_characters)
    if media_type == DOCX:
        return _docx(data, max_pages, max_unpacked_bytes, max_characters)
    try:
        text = decode_text(data)
    except UnsupportedDocument as exc:
        raise DocumentError(str(exc)) from None
    if media_type == HTML:
        text = html_text(text)
    elif media_type not in (MARKDOWN, TEXT):
        raise DocumentError(f"cannot extract text from {media_type}")
    if not text.strip():
        raise DocumentError("the document holds no text")
    if len(text) > max_characters:
        raise too_long(max_characters)
    return Extracted(text, None)


def inspect_pdf(data: bytes, *, max_pages: int) -> Extracted:
    """Check a PDF the model will read itself (native extraction): readable, not
    encrypted, within the page limit."""
    return _pdf(data, max_pages, max_characters=None)


def _pdf(data: bytes, max_pages: int, *, max_characters: int | None) -> Extracted:
    """With `max_characters` None, the PDF is only checked (its text is not read)."""
    from pypdf import PdfReader  # imported here: the child process is the one that needs it
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _opens_without_password(reader):
            raise DocumentError("the PDF is encrypted (password-protected); upload it without the password")
        pages = len(reader.pages)
        if pages > max_pages:
            raise DocumentError(f"the PDF has {pages} pages; at most {max_pages} (MAX_DOCUMENT_PAGES)")
        if max_characters is None:
            return Extracted("", pages)
        text = BoundedText(max_characters)
        for page in reader.pages:
            text.add("\n\n" + (page.extract_text() or "").strip())
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise DocumentError(f"the PDF is corrupt or unreadable ({type(exc).__name__}: {exc})") from None
    found = text.text().strip()
    if not found:
        raise DocumentError(NO_TEXT_LAYER)
    return Extracted(found, pages)


def _opens_without_password(reader: object) -> bool:
    """Some PDFs are encrypted with an empty user password (only printing or copying is
    restricted): they open like any other."""
    try:
        return bool(reader.decrypt(""))  # type: ignore[attr-defined]
    except Exception:  # an algorithm pypdf cannot do without an extra package: still locked to us
        return False


def _docx(data: bytes, max_pages: int, max_unpacked_bytes: int, max_characters: int) -> Extracted:
    bomb = f"the DOCX unpacks to more than {max_unpacked_bytes} bytes (a zip bomb?); refused"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(info.file_size for info in archive.infolist()) > max_unpacked_bytes:
                raise DocumentError(bomb)
            pages = _docx_pages(archive)
            if pages is not None and pages > max_pages:
                raise DocumentError(f"the DOCX has {pages} pages; at most {max_pages} (MAX_DOCUMENT_PAGES)")
            with archive.open("word/document.xml") as member:
                # Sizes in the directory can lie: the read itself stops at the limit.
                text = _docx_text(_BoundedReader(member, max_unpacked_bytes, bomb), max_characters)
    except DocumentError:
        raise
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, DefusedXmlException, OSError, EOFError,
            UnicodeDecodeError, ValueError) as exc:  # fmt: skip
        raise DocumentError(f"the DOCX is corrupt or unreadable ({type(exc).__name__}: {exc})") from None
    if not text:
        raise DocumentError("the DOCX holds no text")
    return Extracted(text, pages)


class _BoundedReader:
    """A file's reads, ended with a DocumentError past `limit` bytes."""

    def __init__(self, inner: IO[bytes], limit: int, message: str) -> None:
        self.inner, self.left, self.message = inner, limit, message

    def read(self, size: int = -1) -> bytes:
        chunk = self.inner.read(self.left + 1 if size < 0 else min(size, self.left + 1))
        self.left -= len(chunk)
        if self.left < 0:
            raise DocumentError(self.message)
        return chunk


def _docx_text(xml: _BoundedReader, max_characters: int) -> str:
    """The text of document.xml in one streaming pass: each text run once (a paragraph nested
    in another is not repeated in it), a line per paragraph, tabs and breaks kept; parsing
    stops past MAX_XML_DEPTH or `max_characters`."""
    text = BoundedText(max_characters)
    depth = 0
    for event, node in ElementTree.iterparse(xml, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > MAX_XML_DEPTH:
                raise DocumentError(f"the DOCX nests its content deeper than {MAX_XML_DEPTH} levels; refused")
            if node.tag == PARAGRAPH:
                text.add("\n")  # a paragraph starts on a line of its own
            continue
        depth -= 1
        if node.tag == TEXT_RUN and node.text:
            text.add(node.text)
        elif node.tag == TAB:
            text.add("\t")
        elif node.tag in BREAKS:
            text.add("\n")
        node.clear()  # taken: the tree stays small however long the document
    return text.text().strip()


def _docx_pages(archive: zipfile.ZipFile) -> int | None:
    """The page count Word saved in docProps/app.xml, if any (a DOCX has no fixed pages)."""
    try:
        with archive.open("docProps/app.xml") as member:
            root = ElementTree.fromstring(member.read(1_000_000))
    except (KeyError, ElementTree.ParseError, DefusedXmlException):
        return None
    for node in root.iter():
        text = (node.text or "").strip()
        if node.tag.endswith("}Pages") and text.isdigit():
            return int(text)
    return None


_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head"})
_BLOCKS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer", "h1", "h2", "h3",
     "h4", "h5", "h6", "pre", "blockquote", "title", "hr", "dd", "dt"}
)  # fmt: skip


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    """The visible text of an HTML page, a line per block; scripts and styles dropped."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)
