"""The child process that renders a PDF's pages (`python -m bot.pdf_worker`); started by `bot.pdf_pages`.

PDFium parses hostile input and is not thread-safe, so every PDF is rendered in a process of its own:
its address space is capped (`RLIMIT_AS`) and the parent kills it at its deadline, so a PDF built
to exhaust memory or time costs this process only. It reads the PDF on stdin and the request as
one JSON argument {"wanted": [1-based numbers] or null, "max_pages": n, "max_pixels": n, "max_aspect": x},
and writes frames to stdout, each a JSON line, some followed by raw bytes:
  {"pages": total, "read": [numbers]}                first, once the document opened: the pages it renders
                                                     (the wanted ones that exist, else from the first; at most max_pages)
  {"error": "password" | "damaged" | "no_pages"}     instead, when it cannot be read
  {"page": n, "width": w, "height": h, "bytes": k}   then k bytes of PNG
  {"page": n, "absurd": [w_pt, h_pt]}                a page whose size cannot be rendered sensibly
"""

from __future__ import annotations

import io
import json
import math
import resource
import sys
from typing import Any, BinaryIO

__all__ = ["MAX_SCALE", "MEMORY_BYTES", "render_scale"]

MEMORY_BYTES = 1536 * 1024**2  # address space of the child: PDFium, Python and a page's bitmap
MAX_SCALE = 4.0  # 288 dpi: a small page is not blown up past what helps reading it
_MIN_SIDE_PT = 1.0


def render_scale(width_pt: float, height_pt: float, max_pixels: int) -> float:
    """Points -> pixels so the rendered page has at most `max_pixels` pixels (and 288 dpi at most).

    PDFium rounds the bitmap's sides up, so the scale shrinks until the rounded sides fit too."""
    scale = min(MAX_SCALE, math.sqrt(max_pixels / (width_pt * height_pt)))
    while scale > 0 and math.ceil(width_pt * scale) * math.ceil(height_pt * scale) > max_pixels:
        scale *= 0.998
    return scale


def _frame(out: BinaryIO, header: dict[str, object], body: bytes = b"") -> None:
    out.write(json.dumps(header).encode() + b"\n" + body)
    out.flush()


def _render(data: bytes, request: dict[str, Any], out: BinaryIO) -> None:
    import pypdfium2 as pdfium  # imported here: only this process ever loads PDFium
    import pypdfium2.raw as raw

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code in (raw.FPDF_ERR_PASSWORD, raw.FPDF_ERR_SECURITY):
            error = "password"
        elif exc.err_code == raw.FPDF_ERR_SUCCESS:  # PDFium refuses a page tree without pages, naming no error
            error = "no_pages"
        else:
            error = "damaged"
        _frame(out, {"error": error})
        return
    total = len(document)
    if total == 0:
        _frame(out, {"error": "no_pages"})
        return
    max_pages, max_pixels, max_aspect = int(request["max_pages"]), int(request["max_pixels"]), float(request["max_aspect"])
    numbers = [int(n) for n in request["wanted"] or () if 1 <= int(n) <= total]
    numbers = (numbers or list(range(1, min(total, max_pages) + 1)))[:max_pages]  # none wanted or none exists
    _frame(out, {"pages": total, "read": numbers})
    for number in numbers:
        page = document[number - 1]
        width, height = page.get_size()
        if min(width, height) < _MIN_SIDE_PT or max(width, height) / min(width, height) > max_aspect:
            _frame(out, {"page": number, "absurd": [round(width, 1), round(height, 1)]})
            continue
        scale = render_scale(width, height, max_pixels)
        image = page.render(scale=scale, fill_color=(255, 255, 255, 255)).to_pil().convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, "PNG", optimize=False, compress_level=6)
        _frame(out, {"page": number, "width": image.width, "height": image.height, "bytes": buffer.tell()},
               buffer.getvalue())


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    request = json.loads(sys.argv[1])
    data = sys.stdin.buffer.read()
    try:
        _render(data, request, sys.stdout.buffer)
    except MemoryError:
        _frame(sys.stdout.buffer, {"error": "memory"})


if __name__ == "__main__":
    main()
