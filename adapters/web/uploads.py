"""Reading a question from the browser: text, uploaded pictures and references to earlier pictures.

Limits hold while reading, with or without a Content-Length: the multipart stream is read through
a counter that refuses to go past the request's ceiling (a chunked upload that never ends gets a 413
as soon as it crosses it), and a part over its own limit is not read to its end. Every picture is
decoded once here, at most `max_decodes` at a time across all requests (a 64-megapixel picture takes
about 250 MB while it decodes), so a bad upload gets an HTTP error before any answer starts.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import cast

from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from aiohttp.http_exceptions import BadHttpMessage

from bot.i18n import N_, _
from bot.messages import Attachment
from bot.pdf_pages import is_pdf
from bot.pictures import PictureRejected, check_picture
from bot.tiles import STRIP_ASPECT
from bot.videos import check_video, is_video
from bot.wording import VIDEO_OVER_WEB_LIMIT, video_refused
from engine.videos import DEFAULT_VIDEO_LIMITS, VideoLimits

from .bodies import check_text, parse_json_object, string_field, string_list
from .errors import ApiError

__all__ = ["MAX_TEXT_CHARS", "MessageForm", "PictureChecks", "PictureRef", "UploadLimits", "read_message_form"]

MAX_TEXT_CHARS = 16_000
_SHA = re.compile(r"^[0-9a-f]{64}$")
_SESSION = re.compile(r"^[0-9a-f-]{36}$")
# Raster formats only: an SVG is a document that runs script, never a picture here.
_ACCEPTED_TYPES = (
    "image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/webp", "image/gif", "image/bmp", "image/x-ms-bmp",
    "image/tiff", "application/octet-stream", "video/mp4", "video/webm", "video/quicktime",
    "application/pdf",  # a PDF's pages are read in the core
)
_CHUNK = 64 * 1024
_SLACK = 1024 * 1024  # the text, references and multipart framing around the pictures


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_files: int
    max_source_pixels: int
    max_decodes: int = 2
    # Screen recordings: their length and sampling. On the web a video file is held to `max_file_bytes`
    # like a picture (not VLMBOT_MAX_VIDEO_BYTES), so the request's ceiling stays what it was; the
    # refusal says so (wording.VIDEO_OVER_WEB_LIMIT).
    video: VideoLimits = DEFAULT_VIDEO_LIMITS

    @property
    def ceiling(self) -> int:
        """Bytes one question may take on the wire."""
        return self.max_files * self.max_file_bytes + _SLACK


@dataclass(frozen=True)
class PictureRef:
    """A picture of an earlier turn, attached again: the session it is shown in and its hash."""

    session_id: str
    sha256: str


@dataclass(frozen=True)
class MessageForm:
    text: str
    files: tuple[Attachment, ...]
    refs: tuple[PictureRef, ...]


class PictureChecks:
    """Decodes uploads to prove them usable, at most `limits.max_decodes` at once across every request."""

    def __init__(self, limits: UploadLimits) -> None:
        self._limits = limits
        self._slots = asyncio.Semaphore(limits.max_decodes)
        self.decoding = 0  # pictures being decoded now
        self.waiting = 0  # pictures waiting for a slot

    async def check(self, files: list[Attachment]) -> None:
        limits = self._limits
        for attachment in files:
            if is_pdf(attachment.data, attachment.mime_type, attachment.filename):
                continue  # rendered in a child process by the core (bot.pdf_pages), which words its problems
            self.waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self.waiting -= 1
            self.decoding += 1
            try:
                if is_video(attachment.data):  # decoded in a worker thread, stopped at its time limit
                    await check_video(attachment.data, limits.video, name=attachment.filename)
                    continue
                await asyncio.to_thread(
                    check_picture,
                    attachment.data,
                    max_bytes=limits.max_file_bytes,
                    max_pixels=limits.max_source_pixels,
                    name=attachment.filename,
                    max_aspect=STRIP_ASPECT,  # thin strips are padded and long screenshots tiled (bot.tiles)
                )
            except PictureRejected as exc:
                raise ApiError(400, exc.user_message) from None
            finally:
                self.decoding -= 1
                self._slots.release()


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB"


def _too_large(limits: UploadLimits) -> ApiError:
    return ApiError(
        413,
        _("That upload is too large: at most {count} pictures of {size} each.").format(
            count=limits.max_files, size=_mb(limits.max_file_bytes)
        ),
    )


class _CappedBody:
    """The request's body stream as aiohttp's multipart reader uses it, refusing to read past `ceiling` bytes."""

    def __init__(self, stream: StreamReader, ceiling: int, error: ApiError) -> None:
        self._stream = stream
        self._ceiling = ceiling
        self._error = error
        self._consumed = 0

    def _count(self, data: bytes) -> bytes:
        self._consumed += len(data)
        if self._consumed > self._ceiling:
            raise self._error
        return data

    async def read(self, n: int = -1) -> bytes:
        return self._count(await self._stream.read(n))

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        return self._count(await self._stream.readline(max_line_length=max_line_length))

    def at_eof(self) -> bool:
        return self._stream.at_eof()

    def unread_data(self, data: bytes) -> None:
        self._consumed -= len(data)
        self._stream.unread_data(data)


def parse_ref(value: str) -> PictureRef:
    session_id, _sep, sha = value.strip().partition("/")
    if not _SESSION.fullmatch(session_id) or not _SHA.fullmatch(sha):
        raise ApiError(400, _("That picture reference is malformed; attach the picture again."))
    return PictureRef(session_id, sha)


async def _read_limited(part: BodyPartReader, limit: int) -> bytes | None:
    """The part's bytes, or None as soon as it is longer than `limit`."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def read_message_form(request: web.Request, limits: UploadLimits, checks: PictureChecks) -> MessageForm:
    """multipart/form-data (fields `text`, `file` and `ref` = "SESSION/SHA256", both repeatable), a plain form
    (`text`, `ref`) or JSON {"text", "refs"}."""
    if request.content_length is not None and request.content_length > limits.ceiling:
        raise _too_large(limits)
    if request.content_type == "application/json":
        body = parse_json_object(await request.read())  # bounded by the app's client_max_size
        text = string_field(body, "text")
        refs = [parse_ref(r) for r in string_list(body, "refs", max_items=limits.max_files)]
        return _checked_text(text, refs, limits)
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            fields = await request.post()  # bounded by the app's client_max_size
        except LookupError:  # the charset parameter names no codec
            raise ApiError(400, _("That form's charset is unknown; send it as UTF-8.")) from None
        refs = [parse_ref(str(r)) for r in fields.getall("ref", [])]
        return _checked_text(str(fields.get("text", "")), refs, limits)
    if request.content_type != "multipart/form-data":
        raise ApiError(415, _("Send the question as multipart/form-data, a form or JSON."))
    try:
        form = await _read_multipart(request, limits)
    except (ValueError, BadHttpMessage) as exc:  # aiohttp's multipart parser refusing the framing
        raise ApiError(400, _("That upload is malformed; send the question again.")) from exc
    await checks.check(list(form.files))
    return form


async def _read_multipart(request: web.Request, limits: UploadLimits) -> MessageForm:
    body = _CappedBody(request.content, limits.ceiling, _too_large(limits))
    # The reader only calls read, readline, at_eof and unread_data on its stream; _CappedBody has them all.
    reader = MultipartReader(request.headers, cast(StreamReader, body))
    text = ""
    files: list[Attachment] = []
    refs: list[PictureRef] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, _("Nested multipart bodies are not accepted."))
        if part.name == "text":
            raw = await _read_limited(part, MAX_TEXT_CHARS * 4)
            if raw is None:
                raise ApiError(413, _("That question is too long; keep it under {limit} characters.").format(limit=MAX_TEXT_CHARS))
            text = raw.decode("utf-8", errors="replace")
        elif part.name == "ref":
            if len(refs) >= limits.max_files:
                raise ApiError(400, _("That is too many pictures; I can look at {limit} at a time.").format(limit=limits.max_files))
            raw = await _read_limited(part, 200)
            refs.append(parse_ref((raw or b"").decode("ascii", errors="replace")))
        elif part.name == "file":
            files.append(await _read_file(part, limits, len(files) + len(refs)))
        else:
            await part.release()  # read to the void, through the byte ceiling
    _checked_text(text, refs, limits)
    if len(files) + len(refs) > limits.max_files:
        raise ApiError(
            400, _("That is {count} pictures; I can look at {limit} at a time.").format(count=len(files) + len(refs), limit=limits.max_files)
        )
    return MessageForm(text=text, files=tuple(files), refs=tuple(refs))


def _checked_text(text: str, refs: list[PictureRef], limits: UploadLimits) -> MessageForm:
    if len(text) > MAX_TEXT_CHARS:
        raise ApiError(413, _("That question is too long; keep it under {limit} characters.").format(limit=MAX_TEXT_CHARS))
    check_text(text, N_("The question"))
    if len(refs) > limits.max_files:
        raise ApiError(400, _("That is {count} pictures; I can look at {limit} at a time.").format(count=len(refs), limit=limits.max_files))
    return MessageForm(text=text, files=(), refs=tuple(refs))


async def _read_file(part: BodyPartReader, limits: UploadLimits, count: int) -> Attachment:
    name = check_text(part.filename or "picture", N_("The file name"))[:200]
    if count >= limits.max_files:
        raise ApiError(400, _("That is too many pictures; I can look at {limit} at a time.").format(limit=limits.max_files))
    declared = (part.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip().lower()
    if declared == "image/svg+xml":
        raise ApiError(415, _("'{name}' is an SVG drawing; please send a PNG, JPEG or WebP picture (a screenshot works).").format(name=name))
    if declared not in _ACCEPTED_TYPES:
        raise ApiError(
            415, _("'{name}' is not a picture ({type}); please send a PNG, JPEG or WebP image.").format(name=name, type=declared[:60])
        )
    data = await _read_limited(part, limits.max_file_bytes)
    if data is None and declared.startswith("video/"):
        raise ApiError(413, video_refused(VIDEO_OVER_WEB_LIMIT, name, _mb(limits.max_file_bytes)))
    if data is None:
        raise ApiError(
            413,
            _("'{name}' is over the {limit} limit; please send a smaller picture or a screenshot.").format(
                name=name, limit=_mb(limits.max_file_bytes)
            ),
        )
    if not data:
        raise ApiError(400, _("'{name}' is empty; please send the picture again.").format(name=name))
    return Attachment(data=data, filename=name, mime_type=declared)
