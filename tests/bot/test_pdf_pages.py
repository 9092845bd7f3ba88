"""PDF pages rendered in a child process: the budget, the pages asked for, and every bad PDF's verdict."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from bot.page_choice import chinese_number, format_pages, requested_pages
from bot.pdf_pages import PdfProblem, PdfRenderer, PdfUnreadable, is_pdf
from bot.pdf_worker import render_scale
from tests.pdfs import (
    COLOURS,
    absurd_pdf,
    coloured_pdf,
    corrupt_pdf,
    encrypted_pdf,
    no_pages_pdf,
    slow_pdf,
)

BUDGET = 64 * 28 * 28


def renderer(timeout_s: float = 30.0) -> PdfRenderer:
    return PdfRenderer(max_pixels=BUDGET, timeout_s=timeout_s)


def centre(png: bytes) -> tuple[int, int, int]:
    """The colour in the middle of a page, to the nearest of COLOURS (Pillow stores the pages as JPEG)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    pixel = image.getpixel((image.width // 2, image.height // 2))
    return min(COLOURS, key=lambda c: sum(abs(a - b) for a, b in zip(c, pixel, strict=True)))


async def test_pages_render_at_the_pixel_budget_in_order() -> None:
    rendered = await renderer().render(coloured_pdf(3), max_pages=8)
    assert rendered.total == 3 and [p.number for p in rendered.pages] == [1, 2, 3]
    for page, colour in zip(rendered.pages, COLOURS, strict=False):
        assert page.width * page.height <= BUDGET and page.width * page.height > 0.95 * BUDGET
        assert abs(page.width / page.height - 300 / 400) < 0.01
        assert centre(page.data) == colour


async def test_the_first_pages_or_the_ones_asked_for() -> None:
    document = coloured_pdf(12)
    first = await renderer().render(document, max_pages=8)
    assert first.total == 12 and [p.number for p in first.pages] == list(range(1, 9))
    chosen = await renderer().render(document, wanted=(3, 4, 5), max_pages=8)
    assert [p.number for p in chosen.pages] == [3, 4, 5] and centre(chosen.pages[0].data) == COLOURS[2]
    beyond = await renderer().render(document, wanted=(20, 30), max_pages=2)
    assert [p.number for p in beyond.pages] == [1, 2]  # none of them exists: from the start


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", PdfProblem.EMPTY),
        (encrypted_pdf(), PdfProblem.PASSWORD),
        (corrupt_pdf(), PdfProblem.DAMAGED),
        (b"%PDF-1.7\nnot really", PdfProblem.DAMAGED),
        (no_pages_pdf(), PdfProblem.NO_PAGES),
        (absurd_pdf(), PdfProblem.ABSURD_PAGES),
    ],
    ids=["empty", "encrypted", "corrupt", "header-only", "no-pages", "absurd-page"],
)
async def test_bad_pdfs_have_a_verdict(data: bytes, problem: PdfProblem) -> None:
    with pytest.raises(PdfUnreadable) as caught:
        await renderer().render(data, max_pages=8)
    assert caught.value.problem is problem


async def test_a_hostile_pdf_is_stopped_and_the_event_loop_stays_free() -> None:
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(ticking())
    try:
        with pytest.raises(PdfUnreadable) as caught:
            await renderer(timeout_s=1.0).render(slow_pdf(), max_pages=8)
    finally:
        ticker.cancel()
    assert caught.value.problem is PdfProblem.TOO_SLOW
    assert ticks > 10  # the loop ran while PDFium worked in its own process
    # and the renderer still works afterwards
    assert (await renderer().render(coloured_pdf(1), max_pages=8)).total == 1


def test_render_scale_keeps_to_the_budget_and_288_dpi() -> None:
    assert render_scale(612, 792, 1_003_520) == pytest.approx((1_003_520 / (612 * 792)) ** 0.5, rel=0.01)
    assert render_scale(10, 10, 1_003_520) == 4.0


def test_pdfs_are_known_by_their_header_or_their_description() -> None:
    assert is_pdf(b"%PDF-1.7 ...") and is_pdf(b"\n\n%PDF-1.4") and is_pdf(b"", "application/pdf")
    assert is_pdf(b"", None, "Invoice.PDF") and not is_pdf(b"\x89PNG....", "image/png", "x.png")


@pytest.mark.parametrize(
    ("text", "pages"),
    [
        ("what is on pages 3-5?", (3, 4, 5)),
        ("page 2 please", (2,)),
        ("Pages 2, 4 and 7", (2, 4, 7)),
        ("see p. 3", (3,)),
        ("page 10 to 12", (10, 11, 12)),
        ("第3-5页写了什么", (3, 4, 5)),
        ("第2页", (2,)),
        ("第3至第5页", (3, 4, 5)),
        ("the 2 pages", ()),
        ("第3页到第5页", (3, 4, 5)),
        ("第3至5页", (3, 4, 5)),
        ("第三页", (3,)),
        ("第十一页", (11,)),
        ("第二十页写了什么", (20,)),
        ("第两页和第九十九页", (2, 99)),
        ("3-5页", (3, 4, 5)),
        ("3到5页", (3, 4, 5)),
        ("这个文件有3页", ()),
        ("看一到两页", ()),
        ("The intranet page 404s when I click the link, why?", ()),
        ("pages 3-5s", ()),
        ("what is the total?", ()),
    ],
)
def test_pages_named_in_a_question(text: str, pages: tuple[int, ...]) -> None:
    assert requested_pages(text) == pages


def test_huge_ranges_are_bounded_and_pages_are_worded() -> None:
    assert len(requested_pages("pages 1-999999")) == 1000
    assert format_pages([1, 2, 3, 5]) == "pages 1-3 and 5" and format_pages([4]) == "page 4"
    assert format_pages([1, 3, 4, 9]) == "pages 1, 3-4 and 9"


def test_chinese_numerals_up_to_ninety_nine() -> None:
    assert [chinese_number(t) for t in ("三", "十", "十一", "二十", "二十三", "九十九", "两", "一〇", "12")] == [
        3, 10, 11, 20, 23, 99, 2, 10, 12
    ]
    assert [chinese_number(t) for t in ("十十", "三四五", "百", "一十二三")] == [None, None, None, None]
