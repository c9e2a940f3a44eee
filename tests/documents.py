"""Test documents, made here with no network: PDFs (written by hand, encrypted with
pypdf), DOCX files (python-docx, and a zip bomb by hand), HTML, and a liar."""

from __future__ import annotations

import io
import zipfile

from docx import Document
from pypdf import PdfReader, PdfWriter


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf(pages: list[list[str]]) -> bytes:
    """A PDF with a real text layer: each page shows its lines in Helvetica."""
    objects: list[bytes] = []
    page_ids = [3 + 2 * i for i in range(len(pages))]
    font_id = 3 + 2 * len(pages)
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    for page_id, lines in zip(page_ids, pages, strict=True):
        content = "BT /F1 11 Tf 14 TL 50 780 Td " + " ".join(f"({_escape(line)}) Tj T*" for line in lines) + " ET"
        stream = content.encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 {font_id} 0 R >> >> "
            f"/Contents {page_id + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return _assemble(objects)


def image_only_pdf() -> bytes:
    """A one-page PDF that draws an image and holds no text: what a scanner makes."""
    pixels = bytes(range(256)) * 16  # 64 x 64 grey
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /XObject << /Im1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
    ]
    draw = b"q 400 0 0 400 100 300 cm /Im1 Do Q"
    objects.append(b"<< /Length %d >>\nstream\n" % len(draw) + draw + b"\nendstream")
    objects.append(
        b"<< /Type /XObject /Subtype /Image /Width 64 /Height 64 /ColorSpace /DeviceGray /BitsPerComponent 8 "
        b"/Length %d >>\nstream\n" % len(pixels) + pixels + b"\nendstream"
    )
    return _assemble(objects)


def _assemble(objects: list[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def encrypted_pdf(password: str = "s3cret") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf([["Top secret plans"]]))))
    writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def report_pages(count: int, lines_per_page: int = 40) -> list[list[str]]:
    """`count` pages of plausible prose, each line numbered so chunks can be told apart."""
    return [
        [
            f"Page {page} line {line}: the quarterly report notes steady growth in every region."
            for line in range(1, lines_per_page + 1)
        ]
        for page in range(1, count + 1)
    ]


def docx(paragraphs: list[str]) -> bytes:
    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_bomb(unpacked_bytes: int) -> bytes:
    """A DOCX whose document.xml unpacks to `unpacked_bytes` (mostly spaces): tiny packed."""
    head = b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(head)
            block = b" " * 1024 * 1024
            for _ in range(unpacked_bytes // len(block)):
                member.write(block)
            member.write(b"<w:body/></w:document>")
    return out.getvalue()


HTML_PAGE = """<!DOCTYPE html>
<html><head><title>Ignored title</title><style>body { color: red }</style>
<script>var secret = "not text";</script></head>
<body><h1>Quarterly report</h1><p>Revenue grew &amp; costs fell.</p>
<ul><li>First point</li><li>Second point</li></ul></body></html>
"""


WORD_NAMESPACE = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def docx_with_body(body: str) -> bytes:
    """A DOCX whose document.xml body is `body` (WordprocessingML with the `w:` prefix)."""
    xml = f'<?xml version="1.0"?><w:document xmlns:w="{WORD_NAMESPACE}"><w:body>{body}</w:body></w:document>'
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", xml)
    return out.getvalue()


def nested_paragraphs_docx(depth: int, text: str = "x") -> bytes:
    """Paragraphs nested `depth` deep, each with its own run of `text` (a 20,000-deep one is
    ~700 bytes packed)."""
    run = f"<w:r><w:t>{text}</w:t></w:r>"
    return docx_with_body(f"<w:p>{run}" * depth + "</w:p>" * depth)


def docx_with_bad_utf8_name() -> bytes:
    """A DOCX with a member whose name is flagged UTF-8 (general purpose bit 11) but is not."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
        archive.writestr("bad\u00e9.xml", "x")  # zipfile flags a non-ASCII name UTF-8
    return out.getvalue().replace("bad\u00e9".encode(), b"bad\xff\xfe")


def zip_with_entries(count: int) -> bytes:
    """A ZIP of `count` empty members (no DOCX): a large central directory."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for number in range(count):
            archive.writestr(f"f{number}", b"")
    return out.getvalue()


def html_behind_comments(count: int) -> bytes:
    """`<!---->` `count` times, then text: what made a backtracking HTML sniffer take 2^n."""
    return b"<!---->" * count + b"x"
