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

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from service.documents.formats import DOCX, HTML, MARKDOWN, PDF, TEXT, UnsupportedDocument, decode_text

WORD_NS = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
NO_TEXT_LAYER = "the PDF has no extractable text (a scan or images only); try `extraction: native`"


class DocumentError(Exception):
    """The document cannot be read; the message is for a person."""


@dataclass(frozen=True)
class Extracted:
    text: str  # empty when only inspected (native extraction)
    pages: int | None


def extract(data: bytes, media_type: str, *, max_pages: int, max_unpacked_bytes: int) -> Extracted:
    """The document's text and page count; raises DocumentError for a bad document."""
    if media_type == PDF:
        return _pdf(data, max_pages, with_text=True)
    if media_type == DOCX:
        return _docx(data, max_pages, max_unpacked_bytes)
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
    return Extracted(text, None)


def inspect_pdf(data: bytes, *, max_pages: int) -> Extracted:
    """Check a PDF the model will read itself (native extraction): readable, not
    encrypted, within the page limit."""
    return _pdf(data, max_pages, with_text=False)


def _pdf(data: bytes, max_pages: int, *, with_text: bool) -> Extracted:
    from pypdf import PdfReader  # imported here: the child process is the one that needs it
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _opens_without_password(reader):
            raise DocumentError("the PDF is encrypted (password-protected); upload it without the password")
        pages = len(reader.pages)
        if pages > max_pages:
            raise DocumentError(f"the PDF has {pages} pages; at most {max_pages} (MAX_DOCUMENT_PAGES)")
        if not with_text:
            return Extracted("", pages)
        text = "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise DocumentError(f"the PDF is corrupt or unreadable ({type(exc).__name__}: {exc})") from None
    if not text.strip():
        raise DocumentError(NO_TEXT_LAYER)
    return Extracted(text.strip(), pages)


def _opens_without_password(reader: object) -> bool:
    """Some PDFs are encrypted with an empty user password (only printing or copying is
    restricted): they open like any other."""
    try:
        return bool(reader.decrypt(""))  # type: ignore[attr-defined]
    except Exception:  # an algorithm pypdf cannot do without an extra package: still locked to us
        return False


def _docx(data: bytes, max_pages: int, max_unpacked_bytes: int) -> Extracted:
    bomb = f"the DOCX unpacks to more than {max_unpacked_bytes} bytes (a zip bomb?); refused"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(info.file_size for info in archive.infolist()) > max_unpacked_bytes:
                raise DocumentError(bomb)
            # Sizes in the directory can lie: the read itself stops at the limit.
            with archive.open("word/document.xml") as member:
                xml = member.read(max_unpacked_bytes + 1)
            if len(xml) > max_unpacked_bytes:
                raise DocumentError(bomb)
            pages = _docx_pages(archive)
        root = ElementTree.fromstring(xml)
    except DocumentError:
        raise
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, DefusedXmlException, OSError, EOFError) as exc:
        raise DocumentError(f"the DOCX is corrupt or unreadable ({type(exc).__name__}: {exc})") from None
    if pages is not None and pages > max_pages:
        raise DocumentError(f"the DOCX has {pages} pages; at most {max_pages} (MAX_DOCUMENT_PAGES)")
    paragraphs = []
    for paragraph in root.iter(f"{WORD_NS}p"):
        parts = []
        for node in paragraph.iter():
            if node.tag == f"{WORD_NS}t" and node.text:
                parts.append(node.text)
            elif node.tag == f"{WORD_NS}tab":
                parts.append("\t")
            elif node.tag in (f"{WORD_NS}br", f"{WORD_NS}cr"):
                parts.append("\n")
        paragraphs.append("".join(parts))
    text = "\n".join(paragraphs).strip()
    if not text:
        raise DocumentError("the DOCX holds no text")
    return Extracted(text, pages)


def _docx_pages(archive: zipfile.ZipFile) -> int | None:
    """The page count Word saved in docProps/app.xml, if any (a DOCX has no fixed pages)."""
    try:
        with archive.open("docProps/app.xml") as member:
            root = ElementTree.fromstring(member.read(1_000_000))
    except (KeyError, ElementTree.ParseError, DefusedXmlException):
        return None
    for node in root.iter():
        if node.tag.endswith("}Pages") and (node.text or "").strip().isdigit():
            return int(node.text.strip())
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
