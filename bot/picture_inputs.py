"""What a message's files become in the prompt: pictures as sent, a PDF's pages, a long screenshot's
tiles, a screen recording's frames (checked here, sampled by the engine).

Every file is checked like any picture (`bot.pictures`); a PDF is rendered page by page
(`bot.pdf_pages`) at the engine's pixel budget, the pages the question names ("pages 3-5") or the
first ones; a long screenshot is cut into tiles and a thin strip padded (`bot.tiles`). A picture that
fails its check refuses the whole message, as before; a PDF or a video that cannot be read is left out
with one line saying why, and the rest of the message goes on.

One message's files share one budget of pictures (`_Budget`), so that what fits the context alone fits
beside the others: its photos count one each, its videos what their frames may cost
(`bot.videos.video_pictures`) and come off first, and its PDFs and long screenshots share what is left.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, assert_never

from PIL import Image

from bot.messages import Attachment
from bot.page_choice import format_pages, requested_pages
from bot.pdf_pages import PdfProblem, PdfRenderer, PdfUnreadable, RenderedPdf, is_pdf
from bot.picture_sources import PictureSource, SourceKind
from bot.pictures import CheckedPicture, PictureRejected, check_picture
from bot.tiles import STRIP_ASPECT, TilePlan, cut, plan_tiles
from bot.videos import check_video, is_video, video_pictures
from bot.wording import (
    PDF_ABSURD_PAGES,
    PDF_DAMAGED,
    PDF_EMPTY,
    PDF_NO_PAGES,
    PDF_PASSWORD,
    PDF_TOO_LARGE,
    PDF_TOO_SLOW,
    UNNAMED_PDF,
    UNNAMED_SCREENSHOT,
    VIDEO_LEFT_OUT,
    file_label,
    pdf_no_such_page,
    pdf_over_limit,
    pdf_pages_left_out,
    pdf_pages_read,
    pdf_problem,
    screenshot_too_long,
    video_refused,
)
from engine.pictures import ALLOWED_FORMATS, decode_slot
from engine.videos import DEFAULT_VIDEO_BUDGET, DEFAULT_VIDEO_LIMITS, VideoLimits

__all__ = ["InputLimits", "KeptFile", "PictureInputs", "Prepared"]


@dataclass(frozen=True)
class InputLimits:
    max_bytes: int
    max_source_pixels: int
    max_pixels: int  # the engine's budget per picture
    max_pdf_pages: int
    max_tiles: int
    video: VideoLimits = DEFAULT_VIDEO_LIMITS  # screen recordings and GIFs (bot.videos)
    video_tokens: int = DEFAULT_VIDEO_BUDGET.max_tokens  # the visual tokens one video costs at most (`bot.videos.video_budget`)


@dataclass(frozen=True)
class KeptFile:
    """A file kept in the picture store besides its pictures: a PDF, for pages named later."""

    sha256: str
    data: bytes = field(repr=False)
    mime_type: str


@dataclass(frozen=True)
class Prepared:
    pictures: tuple[CheckedPicture, ...]
    sources: tuple[PictureSource, ...]
    notes: tuple[str, ...] = ()  # what was read of a file, when not all of it
    problems: tuple[str, ...] = ()  # files left out, one line each
    files: tuple[KeptFile, ...] = ()  # the PDFs the pages came from

    @property
    def hashes(self) -> list[str]:
        return [picture.sha256 for picture in self.pictures]


class PictureInputs:
    def __init__(self, limits: InputLimits, renderer: PdfRenderer) -> None:
        self._limits = limits
        self._renderer = renderer

    async def prepare(self, attachments: Sequence[Attachment], text: str, *, tiles: bool = True) -> Prepared:
        """Raises PictureRejected for a picture that cannot be read (the whole message is refused).

        `tiles=False` keeps every picture whole, as the engine's limits allow (for /find, whose boxes
        are drawn on the picture as sent). The message's files share one budget of pictures (`_Budget`), so
        that a video and two PDFs fit the context as one PDF does."""
        kinds: list[_Kind] = []
        checked: dict[int, CheckedPicture] = {}
        videos: dict[int, Prepared] = {}
        costs: dict[int, int] = {}  # pictures each readable video may cost
        for index, attachment in enumerate(attachments):  # every picture and video checked before any PDF is rendered
            if is_pdf(attachment.data, attachment.mime_type, attachment.filename):
                kinds.append("pdf")
            elif is_video(attachment.data):  # a screen recording or an animated GIF
                kinds.append("video")
                try:
                    video = await check_video(attachment.data, self._limits.video, name=attachment.filename)
                except PictureRejected as refused:  # left out with its line; the rest of the message goes on
                    videos[index] = Prepared((), (), problems=(refused.user_message,))
                else:
                    videos[index] = Prepared((video.picture,), ())
                    costs[index] = video_pictures(video.frames, self._limits.video_tokens, self._limits.max_pixels)
            elif not tiles:
                kinds.append("whole")
            else:
                checked[index] = picture = await asyncio.to_thread(
                    self._check, attachment.data, attachment.filename, STRIP_ASPECT
                )
                kinds.append("tiles" if self._plan(picture, self._limits.max_tiles) is not None else "picture")
        budget = _Budget.of(kinds, max(self._limits.max_pdf_pages, self._limits.max_tiles))
        for index, cost in costs.items():  # the videos first: the PDFs and long screenshots get what is left
            if not budget.take_video(cost):
                videos[index] = Prepared((), (), notes=(video_refused(VIDEO_LEFT_OUT, attachments[index].filename),))
        pictures: list[CheckedPicture] = []
        sources: list[PictureSource] = []
        notes: list[str] = []
        problems: list[str] = []
        files: list[KeptFile] = []
        for index, (attachment, kind) in enumerate(zip(attachments, kinds, strict=True)):
            match kind:
                case "pdf":
                    outcome = await self._pdf(attachment, text, min(self._limits.max_pdf_pages, budget.share()))
                case "video":  # read whole, checked above
                    outcome = videos[index]
                case "whole":
                    outcome = await self._whole(attachment)
                case "tiles" | "picture":
                    max_tiles = min(self._limits.max_tiles, budget.share()) if kind == "tiles" else self._limits.max_tiles
                    outcome = await self._picture(attachment, checked[index], max_tiles)
                case _:
                    assert_never(kind)
            if kind in _SHARING:
                budget.spent(len(outcome.pictures))
            pictures.extend(outcome.pictures)
            sources.extend(outcome.sources)
            notes.extend(outcome.notes)
            problems.extend(outcome.problems)
            files.extend(outcome.files)
        return Prepared(tuple(pictures), tuple(sources), tuple(notes), tuple(problems), tuple(files))

    def _plan(self, picture: CheckedPicture, max_tiles: int) -> TilePlan | None:
        return plan_tiles(picture.width, picture.height, max_pixels=self._limits.max_pixels, max_tiles=max_tiles)

    def _check(self, data: bytes, name: str | None, max_aspect: float = 200.0) -> CheckedPicture:
        limits = self._limits
        return check_picture(
            data, max_bytes=limits.max_bytes, max_pixels=limits.max_source_pixels, name=name, max_aspect=max_aspect
        )

    # --- PDFs ---------------------------------------------------------------------------------

    async def _pdf(self, attachment: Attachment, text: str, max_pages: int) -> Prepared:
        name = file_label(attachment.filename, UNNAMED_PDF)
        data = attachment.data
        if len(data) > self._limits.max_bytes:
            return Prepared((), (), problems=(pdf_over_limit(name, len(data), self._limits.max_bytes),))
        wanted = requested_pages(text)
        outcome = await self._render(data, attachment.filename, wanted, max_pages=max_pages)
        if isinstance(outcome, str):
            return Prepared((), (), problems=(outcome,))
        prepared, rendered = outcome
        missing = [n for n in wanted if n > rendered.total]  # the renderer read the first pages instead
        notes = (pdf_no_such_page(name, format_pages(missing), rendered.total),) if missing else ()
        return replace(prepared, notes=notes + self._pdf_notes(name, rendered, max_pages))

    async def earlier_pages(
        self, data: bytes, filename: str | None, pages: tuple[int, ...], *, document: int | None = None
    ) -> Prepared:
        """`pages` of a PDF sent earlier and kept (`bot.earlier_pages`), at most `max_pdf_pages` of them;
        `document` names them "Document d, page n" when the conversation has several PDFs."""
        name = file_label(filename, UNNAMED_PDF)
        outcome = await self._render(data, filename, pages, max_pages=self._limits.max_pdf_pages, document=document)
        if isinstance(outcome, str):
            return Prepared((), (), problems=(outcome,))
        prepared, rendered = outcome
        read = [page.number for page in rendered.pages]
        notes = []
        if len(read) + len(rendered.absurd) < len(pages):
            notes.append(pdf_pages_read(name, format_pages(read), rendered.total, self._limits.max_pdf_pages))
        if rendered.absurd:
            notes.append(pdf_pages_left_out(name, format_pages(list(rendered.absurd))))
        return replace(prepared, files=(), notes=tuple(notes))  # the file is kept already

    async def _render(
        self, data: bytes, filename: str | None, wanted: tuple[int, ...], *, max_pages: int, document: int | None = None
    ) -> tuple[Prepared, RenderedPdf] | str:
        """The PDF's pages as checked pictures with their source, or the line saying why it cannot be read."""
        name = file_label(filename, UNNAMED_PDF)
        try:
            rendered = await self._renderer.render(data, wanted=wanted, max_pages=max_pages)
            pages = [await asyncio.to_thread(self._check, page.data, None) for page in rendered.pages]
        except PdfUnreadable as exc:
            return pdf_problem(_unreadable(exc.problem), name)
        except PictureRejected:  # the renderer's own output failed the check: treat the PDF as damaged
            return pdf_problem(PDF_DAMAGED, name)
        sha256 = hashlib.sha256(data).hexdigest()
        source = PictureSource(
            SourceKind.PDF,
            sha256,
            filename,
            tuple(page.sha256 for page in pages),
            tuple(page.number for page in rendered.pages),
            rendered.total,
            document,
        )
        kept = KeptFile(sha256, data, "application/pdf")
        return Prepared(tuple(pages), (source,), files=(kept,)), rendered

    def _pdf_notes(self, name: str, rendered: RenderedPdf, max_pages: int) -> tuple[str, ...]:
        """`max_pages`: the PDF's share of the message's budget, which the note names (fewer than
        `max_pdf_pages` when the message's other files took the rest)."""
        notes = []
        read = [page.number for page in rendered.pages]
        if len(read) + len(rendered.absurd) < rendered.total:
            shared = max_pages < self._limits.max_pdf_pages
            notes.append(pdf_pages_read(name, format_pages(read), rendered.total, max_pages, shared=shared))
        if rendered.absurd:
            notes.append(pdf_pages_left_out(name, format_pages(list(rendered.absurd))))
        return tuple(notes)

    # --- pictures -----------------------------------------------------------------------------

    async def _whole(self, attachment: Attachment) -> Prepared:
        return Prepared((await asyncio.to_thread(self._check, attachment.data, attachment.filename),), ())

    async def _picture(self, attachment: Attachment, checked: CheckedPicture, max_tiles: int) -> Prepared:
        """`checked` is the picture as sent (checked up to STRIP_ASPECT); tiles, or padded, when long."""
        plan = self._plan(checked, max_tiles)
        if plan is None and max(checked.width, checked.height) / min(checked.width, checked.height) <= 200:
            return Prepared((checked,), ())
        pieces = await asyncio.to_thread(_cut, checked.data, plan)
        parts = [await asyncio.to_thread(self._check, piece, attachment.filename) for piece in pieces]
        if plan is None:  # a strip, padded: it stands for the picture as sent
            return Prepared(tuple(parts), ())
        source = PictureSource(
            SourceKind.TILES,
            checked.sha256,
            attachment.filename,
            tuple(part.sha256 for part in parts),
            tuple(range(1, len(parts) + 1)),
            plan.needed,
        )
        notes: tuple[str, ...] = ()
        if not plan.complete:
            percent = int(plan.read_fraction * 100)
            notes = (screenshot_too_long(file_label(attachment.filename, UNNAMED_SCREENSHOT), percent, plan.tall),)
        return Prepared(tuple(parts), (source,), notes=notes)


_Kind = Literal["pdf", "video", "whole", "tiles", "picture"]
_SHARING: tuple[_Kind, ...] = ("pdf", "tiles")  # the files read as several pictures


@dataclass
class _Budget:
    """Pictures the files of one message may still become: the larger of `max_pdf_pages` and `max_tiles`
    (what one PDF or long screenshot may take alone, so one fits the context), less one per photo and
    what each video may cost (`take_video`, before any PDF is read); each PDF and long screenshot gets an
    even share of what is left when its turn comes (one page at least), so a short PDF leaves its unused
    share to the files after it."""

    left: int
    files: int  # sharing files not read yet
    videos: int = 0  # videos taken

    @classmethod
    def of(cls, kinds: Sequence[_Kind], pictures: int) -> _Budget:
        return cls(pictures - sum(kind in ("whole", "picture") for kind in kinds), sum(kind in _SHARING for kind in kinds))

    def take_video(self, cost: int) -> bool:
        """Whether a video that may cost `cost` pictures is read. The first always is (one video fits the
        context beside a PDF's first page: `bot.videos.video_budget` gives it half the context at most); a
        later one only when the videos still leave each PDF and long screenshot one picture."""
        if self.videos and cost > self.left - self.files:
            return False
        self.left -= cost
        self.videos += 1
        return True

    def share(self) -> int:
        return max(1, self.left // max(1, self.files))

    def spent(self, pictures: int) -> None:
        self.left -= pictures
        self.files -= 1


def _cut(data: bytes, plan: TilePlan | None) -> list[bytes]:
    with decode_slot(), Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
        image.load()
        return cut(image, plan)


def _unreadable(problem: PdfProblem) -> str:
    match problem:
        case PdfProblem.EMPTY:
            return PDF_EMPTY
        case PdfProblem.NO_PAGES:
            return PDF_NO_PAGES
        case PdfProblem.PASSWORD:
            return PDF_PASSWORD
        case PdfProblem.DAMAGED:
            return PDF_DAMAGED
        case PdfProblem.TOO_SLOW:
            return PDF_TOO_SLOW
        case PdfProblem.TOO_LARGE:
            return PDF_TOO_LARGE
        case PdfProblem.ABSURD_PAGES:
            return PDF_ABSURD_PAGES
        case _:
            assert_never(problem)
