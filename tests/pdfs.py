"""PDFs for tests, made with Pillow and pypdfium2 (and by hand where no library writes such a file)."""

from __future__ import annotations

import io
import zlib

import pypdfium2 as pdfium
from PIL import Image, ImageDraw

__all__ = [
    "COLOURS",
    "absurd_pdf",
    "coloured_pdf",
    "corrupt_pdf",
    "encrypted_pdf",
    "no_pages_pdf",
    "slow_pdf",
    "tall_screenshot",
]

COLOURS = [(230, 20, 20), (20, 200, 20), (20, 20, 230), (230, 230, 20), (20, 230, 230), (230, 20, 230)]


def coloured_pdf(pages: int, size: tuple[int, int] = (300, 400)) -> bytes:
    """`pages` pages of `size` points, page n filled with COLOURS[(n-1) % 6] and its number written on it."""
    images = []
    for n in range(1, pages + 1):
        image = Image.new("RGB", size, COLOURS[(n - 1) % len(COLOURS)])
        ImageDraw.Draw(image).text((10, 10), f"page {n}", fill=(0, 0, 0))
        images.append(image)
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=72.0)
    return out.getvalue()


def _handmade(objects: list[bytes], trailer: bytes = b"") -> bytes:
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return out


def _page(media_box: bytes, contents: bytes = b"") -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [" + media_box + b"]" + contents + b" >>",
    ]


def encrypted_pdf() -> bytes:
    """Standard security handler with a user password (not the empty one): PDFium asks for it."""
    encrypt = b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>"
    ident = b"<" + b"33" * 16 + b">"
    return _handmade([*_page(b"0 0 612 792"), encrypt], b"/Encrypt 4 0 R /ID [" + ident + b" " + ident + b"] ")


def corrupt_pdf() -> bytes:
    return coloured_pdf(2)[:300] + b"\x00garbage" * 20


def no_pages_pdf() -> bytes:
    document = pdfium.PdfDocument.new()
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def absurd_pdf() -> bytes:
    """One page 1 point high and 14400 points wide."""
    return _handmade(_page(b"0 0 14400 1"))


def slow_pdf(operations: int = 3_000_000) -> bytes:
    """A page whose (compressed, small) content stream draws millions of curves: seconds of PDFium's time."""
    stream = zlib.compress(b"0 0 m 300 400 100 0 612 792 c S\n" * operations, 9)
    objects = [
        *_page(b"0 0 612 792", b" /Contents 4 0 R"),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    return _handmade(objects)


def tall_screenshot(size: tuple[int, int] = (200, 1500), line: int = 14) -> bytes:
    """A scrolling screenshot: black text lines every 2 x `line` pixels, a coloured band per 250 px."""
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for top in range(0, size[1], 250):
        draw.rectangle((0, top, size[0], top + 20), fill=COLOURS[(top // 250) % len(COLOURS)])
    for top in range(30, size[1] - line, 2 * line):
        draw.rectangle((5, top, size[0] // 2, top + line - 1), fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
