"""One message's files in one pictures budget (`bot.picture_inputs`): its videos come off first, its PDFs
get what is left, a video that no longer fits is left out with a line, and a video that cannot be read
(damaged, or too slow to decode) is left out while the rest of the message goes on."""

from __future__ import annotations

import pytest

from bot.i18n import speaking
from bot.language import Language
from bot.messages import Attachment
from bot.pdf_pages import PdfRenderer
from bot.picture_inputs import InputLimits, PictureInputs, Prepared
from bot.pictures import PictureRejected
from bot.videos import REFUSAL_TEXTS, video_pictures
from bot.wording import VIDEO_LEFT_OUT, video_refused
from engine.videos import VideoLimits, VideoProblem
from tests.conftest import picture_bytes
from tests.engine.videos import clip, slow_first_frame
from tests.pdfs import coloured_pdf

MAX_PIXELS = 64 * 28 * 28  # 49 visual tokens a picture on Qwen3-VL: a video's 2560 tokens never cap its pairs here


def inputs(*, video_tokens: int = 2560, video: VideoLimits | None = None) -> PictureInputs:
    limits = InputLimits(
        max_bytes=20 * 1024**2,
        max_source_pixels=64_000_000,
        max_pixels=MAX_PIXELS,
        max_pdf_pages=8,
        max_tiles=10,  # the message's budget: 10 pictures
        video=video or VideoLimits(),
        video_tokens=video_tokens,
    )
    return PictureInputs(limits, PdfRenderer(max_pixels=MAX_PIXELS, timeout_s=30.0))


async def prepare(*files: tuple[str, bytes], video_tokens: int = 2560, video: VideoLimits | None = None) -> Prepared:
    attachments = [Attachment(data, name) for name, data in files]
    return await inputs(video_tokens=video_tokens, video=video).prepare(attachments, "What is this?")


def pages_read(prepared: Prepared) -> int:
    return sum(len(source.parts) for source in prepared.sources)


def test_a_video_costs_a_picture_per_frame_pair_at_most_what_its_tokens_are_worth() -> None:
    assert [video_pictures(frames, 2560, MAX_PIXELS) for frames in (2, 6, 7, 32)] == [1, 3, 4, 16]
    assert video_pictures(32, 100, MAX_PIXELS) == 3  # 100 tokens: three pictures of 49 tokens on Qwen3-VL
    assert video_pictures(32, 2560, 1280 * 28 * 28) == 3  # the defaults: 2560 tokens, 980 a picture on Qwen3-VL
    assert video_pictures(32, 8192, 1280 * 28 * 28) == 9


async def test_a_clip_comes_off_the_budget_before_a_long_pdf() -> None:
    alone = await prepare(("manual.pdf", coloured_pdf(12)))
    assert pages_read(alone) == 8 and "I read pages 1-8" in alone.notes[0]
    both = await prepare(("clip.mp4", clip(seconds=3.0)), ("manual.pdf", coloured_pdf(12)))  # 3 frame pairs
    assert pages_read(both) == 7 and len(both.pictures) == 8  # the clip and 7 pages: 10 pictures' worth
    assert both.pictures[0].mime_type == "video/mp4" and not both.problems
    # the note names the pages this message could read (7), not what a PDF alone may take (8)
    assert alone.notes == ("'manual.pdf' has 12 pages; I read pages 1-8. Name others in your question "
                           '(e.g. "pages 3-5"; up to 8 at a time) to read them.',)
    assert both.notes == ("'manual.pdf' has 12 pages; I read pages 1-7. Up to 7 pages fit beside the other files "
                          'of this message; name others in your next question (e.g. "pages 3-5") to read them.',)
    capped = await prepare(("clip.mp4", clip(seconds=6.0)), ("manual.pdf", coloured_pdf(12)), video_tokens=100)
    assert pages_read(capped) == 7  # 6 pairs, but 100 tokens are worth only 3 pictures
    one = await prepare(("clip.mp4", clip(seconds=9.0)), ("manual.pdf", coloured_pdf(12)))  # 9 pairs: 1 page left
    assert pages_read(one) == 1 and one.notes == (
        "'manual.pdf' has 12 pages; I read page 1. Only 1 page fit beside the other files of this message; "
        'name others in your next question (e.g. "page 3") to read them.',
    )
    with speaking(Language.ZH):
        chinese = await prepare(("clip.mp4", clip(seconds=3.0)), ("manual.pdf", coloured_pdf(12)))
    assert chinese.notes == (
        "“manual.pdf”共有 12 页；我读了第 1-7 页。与这条消息中的其他文件一起，最多只能读 7 页；"
        "要读其他页，请在下一个问题中写明（例如“第3-5页”）。",
    )


async def test_a_video_that_no_longer_fits_is_left_out_with_a_line() -> None:
    first, second = clip(seconds=6.0), clip(seconds=6.5)  # 6 and 7 frame pairs
    prepared = await prepare(("a.mp4", first), ("b.mp4", second), ("manual.pdf", coloured_pdf(12)))
    assert [p.data for p in prepared.pictures[:1]] == [first] and pages_read(prepared) == 4  # 10 - 6
    assert second not in [p.data for p in prepared.pictures] and not prepared.problems
    assert prepared.notes[0] == video_refused(VIDEO_LEFT_OUT, "b.mp4")
    assert "'b.mp4' was left out" in prepared.notes[0] and "I read pages 1-4" in prepared.notes[1]
    small = await prepare(("a.mp4", clip(seconds=3.0)), ("b.mp4", clip(seconds=3.0)), ("manual.pdf", coloured_pdf(12)))
    assert len(small.pictures) == 2 + 4 and small.notes[0].startswith("'manual.pdf' has 12 pages; I read pages 1-4.")
    alone = await prepare(("long.mp4", clip(seconds=30.0, rate=2)))  # 16 pairs, over the budget: alone it is read
    assert len(alone.pictures) == 1 and not alone.notes


async def test_a_video_that_cannot_be_read_is_left_out_and_the_pictures_go_on() -> None:
    broken = b"\x00\x00\x00\x18ftypisom" + b"\x17" * 300
    prepared = await prepare(("broken.mp4", broken), ("red.png", picture_bytes()))
    assert prepared.problems == (video_refused(REFUSAL_TEXTS[VideoProblem.DAMAGED], "broken.mp4"),)
    assert len(prepared.pictures) == 1 and prepared.pictures[0].mime_type == "image/png"
    with pytest.raises(PictureRejected):  # a picture that fails its check still refuses the whole message
        await prepare(("clip.mp4", clip(seconds=1.0)), ("bad.png", b"\x89PNG\r\n\x1a\nbroken"))


async def test_a_video_whose_first_frame_is_slow_is_refused_in_time_and_the_rest_goes_on(monkeypatch) -> None:
    hostile = clip(seconds=20.0, rate=10)  # 200 packets of 50 ms each, against a limit of 0.3 s
    decoded = slow_first_frame(monkeypatch)
    prepared = await prepare(
        ("hostile.mp4", hostile), ("red.png", picture_bytes()), ("manual.pdf", coloured_pdf(3)), video=VideoLimits(timeout_s=0.3)
    )
    assert prepared.problems == (video_refused(REFUSAL_TEXTS[VideoProblem.TOO_SLOW], "hostile.mp4"),)
    assert 0 < len(decoded) < 100  # stopped long before the stream's end
    assert [p.mime_type for p in prepared.pictures] == ["image/png"] * 4 and pages_read(prepared) == 3  # costs nothing
