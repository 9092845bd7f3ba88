"""A PDF's pages as pictures: rendered by PDFium in a child process of its own (`bot.pdf_worker`).

Each render runs in a fresh `python -m bot.pdf_worker` with a capped address space, at most
`workers` at a time; the child is killed at `timeout_s`, and its output is read up to a ceiling.
A PDF built to take all memory or loop for minutes therefore delays only its own message: other
answers keep going on the event loop, and other PDFs wait for a free worker at most `timeout_s`.
Every page is rendered at the engine's pixel budget, so it reaches the model without being shrunk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["PDF_MAGIC", "PdfPage", "PdfProblem", "PdfRenderer", "PdfUnreadable", "RenderedPdf", "is_pdf"]

log = logging.getLogger(__name__)

PDF_MAGIC = b"%PDF-"
_HEADER_WINDOW = 1024  # PDF readers accept the header anywhere in the first kilobyte


def is_pdf(data: bytes, mime_type: str | None = None, name: str | None = None) -> bool:
    """Whether a file is (meant to be) a PDF: by its header, else by what the platform or its name says."""
    if PDF_MAGIC in data[:_HEADER_WINDOW]:
        return True
    return (mime_type or "").lower() == "application/pdf" or (name or "").lower().endswith(".pdf")


class PdfProblem(StrEnum):
    EMPTY = "empty"  # 0 bytes
    NO_PAGES = "no_pages"
    PASSWORD = "password"
    DAMAGED = "damaged"
    TOO_SLOW = "too_slow"  # the renderer's deadline passed
    TOO_LARGE = "too_large"  # ran out of its memory, or wrote more than any page set may take
    ABSURD_PAGES = "absurd_pages"  # every page read has a size that cannot be rendered


class PdfUnreadable(Exception):
    def __init__(self, problem: PdfProblem, detail: str = "") -> None:
        super().__init__(f"{problem}: {detail}" if detail else str(problem))
        self.problem = problem


@dataclass(frozen=True)
class PdfPage:
    number: int  # 1-based
    data: bytes = field(repr=False)  # PNG
    width: int
    height: int


@dataclass(frozen=True)
class RenderedPdf:
    total: int  # pages in the document
    pages: tuple[PdfPage, ...]  # the pages read, in order
    absurd: tuple[int, ...] = ()  # pages asked for but left out for their size


class PdfRenderer:
    """Renders PDFs in child processes; one per service (its semaphore bounds the children)."""

    def __init__(self, *, max_pixels: int, timeout_s: float, workers: int = 2, max_aspect: float = 200.0) -> None:
        self._max_pixels = max_pixels
        self._timeout_s = timeout_s
        self._max_aspect = max_aspect
        self._slots = asyncio.Semaphore(workers)

    async def render(self, data: bytes, *, wanted: tuple[int, ...] = (), max_pages: int) -> RenderedPdf:
        """The `wanted` pages that exist (else the first ones), at most `max_pages`; raises PdfUnreadable."""
        if not data:
            raise PdfUnreadable(PdfProblem.EMPTY)
        request = {
            "wanted": list(wanted) or None,
            "max_pages": max_pages,
            "max_pixels": self._max_pixels,
            "max_aspect": self._max_aspect,
        }
        # A page's PNG is far below 8 bytes a pixel; more output than that is not a page set.
        ceiling = 4096 + max_pages * (8 * self._max_pixels + 4096)
        async with self._slots:
            output, code = await self._run(data, json.dumps(request), ceiling)
        return _parse(output, code)

    async def _run(self, data: bytes, request: str, ceiling: int) -> tuple[bytes, int | None]:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.pdf_worker", request,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                return await _exchange(child, data, ceiling), await child.wait()
        except TimeoutError:
            log.warning("a PDF took over %.0f s to render; its renderer (pid %s) was stopped", self._timeout_s, child.pid)
            raise PdfUnreadable(PdfProblem.TOO_SLOW) from None
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()


async def _exchange(child: asyncio.subprocess.Process, data: bytes, ceiling: int) -> bytes:
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(data)
        await child.stdin.drain()
        child.stdin.close()
    except (BrokenPipeError, ConnectionResetError):  # it died reading: its output says why, or nothing
        pass
    chunks: list[bytes] = []
    size = 0
    while chunk := await child.stdout.read(1 << 16):
        size += len(chunk)
        if size > ceiling:
            raise PdfUnreadable(PdfProblem.TOO_LARGE, "renderer output over its ceiling")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(output: bytes, code: int | None) -> RenderedPdf:
    """The child's frames (see `bot.pdf_worker`); a child that died without a verdict read a damaged file."""
    position = 0

    def frame() -> dict[str, Any] | None:
        nonlocal position
        end = output.find(b"\n", position)
        if end < 0:
            return None
        header = json.loads(output[position:end])
        position = end + 1
        return header if isinstance(header, dict) else None

    try:
        head = frame()
        if head is None:
            raise PdfUnreadable(PdfProblem.DAMAGED, f"exit {code}")
        if "error" in head:
            error = str(head["error"])
            raise PdfUnreadable(PdfProblem.TOO_LARGE if error == "memory" else PdfProblem(error))
        total, read = int(head["pages"]), list(head["read"])
        pages: list[PdfPage] = []
        absurd: list[int] = []
        while (entry := frame()) is not None:
            if "error" in entry:  # MemoryError on a page
                raise PdfUnreadable(PdfProblem.TOO_LARGE, str(entry["error"]))
            number = int(entry["page"])
            if "absurd" in entry:
                absurd.append(number)
                continue
            length = int(entry["bytes"])
            body = output[position : position + length]
            if len(body) != length:
                break
            position += length
            pages.append(PdfPage(number, body, int(entry["width"]), int(entry["height"])))
    except (ValueError, KeyError, TypeError) as exc:
        raise PdfUnreadable(PdfProblem.DAMAGED, f"unreadable renderer output: {exc}") from None
    if len(pages) + len(absurd) < len(read):  # it stopped part-way (out of memory on a page, a crash)
        raise PdfUnreadable(PdfProblem.DAMAGED, f"stopped after {len(pages)} of {len(read)} pages, exit {code}")
    if not pages:
        raise PdfUnreadable(PdfProblem.ABSURD_PAGES)
    return RenderedPdf(total=total, pages=tuple(pages), absurd=tuple(absurd))
