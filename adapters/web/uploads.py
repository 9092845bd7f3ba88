"""Reading a question from the browser: text, uploaded pictures and references to earlier pictures.

Limits are enforced while reading (a part over the size limit is not read to its end) and every
picture is decoded once here, so a bad upload gets an HTTP error before any answer starts.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

from aiohttp import BodyPartReader, web

from bot.messages import Attachment
from bot.pictures import PictureRejected, check_picture

from .errors import ApiError

__all__ = ["MAX_TEXT_CHARS", "MessageForm", "PictureRef", "UploadLimits", "read_message_form"]

MAX_TEXT_CHARS = 16_000
_SHA = re.compile(r"^[0-9a-f]{64}$")
_SESSION = re.compile(r"^[0-9a-f-]{36}$")
_ACCEPTED_TYPES = ("image/", "application/octet-stream")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_files: int
    max_source_pixels: int


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


def parse_ref(value: str) -> PictureRef:
    session_id, _, sha = value.strip().partition("/")
    if not _SESSION.match(session_id) or not _SHA.match(sha):
        raise ApiError(400, "That picture reference is malformed; attach the picture again.")
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


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB"


async def read_message_form(request: web.Request, limits: UploadLimits) -> MessageForm:
    """multipart/form-data (fields `text`, `file` and `ref` = "SESSION/SHA256", both repeatable), a plain form
    (`text`, `ref`) or JSON {"text", "refs"}."""
    ceiling = limits.max_files * limits.max_file_bytes + 1024 * 1024
    if request.content_length is not None and request.content_length > ceiling:
        raise ApiError(
            413, f"That upload is too large: at most {limits.max_files} pictures of {_mb(limits.max_file_bytes)} each."
        )
    if request.content_type == "application/json":
        return await _read_json(request, limits)
    if request.content_type == "application/x-www-form-urlencoded":
        fields = await request.post()  # bounded by the app's client_max_size
        refs = [parse_ref(str(r)) for r in fields.getall("ref", [])]
        return _checked_text(str(fields.get("text", "")), refs, limits)
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "Send the question as multipart/form-data, a form or JSON.")
    text = ""
    files: list[Attachment] = []
    refs: list[PictureRef] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "Nested multipart bodies are not accepted.")
        if part.name == "text":
            raw = await _read_limited(part, MAX_TEXT_CHARS * 4)
            if raw is None:
                raise ApiError(413, f"That question is too long; keep it under {MAX_TEXT_CHARS} characters.")
            text = raw.decode("utf-8", errors="replace")
        elif part.name == "ref":
            raw = await _read_limited(part, 200)
            refs.append(parse_ref((raw or b"").decode("ascii", errors="replace")))
        elif part.name == "file":
            files.append(await _read_file(part, limits, len(files)))
        else:
            await part.release()
    _checked_text(text, refs, limits)
    if len(files) + len(refs) > limits.max_files:
        raise ApiError(400, f"That is {len(files) + len(refs)} pictures; I can look at {limits.max_files} at a time.")
    await _check_pictures(files, limits)
    return MessageForm(text=text, files=tuple(files), refs=tuple(refs))


def _checked_text(text: str, refs: list[PictureRef], limits: UploadLimits) -> MessageForm:
    if len(text) > MAX_TEXT_CHARS:
        raise ApiError(413, f"That question is too long; keep it under {MAX_TEXT_CHARS} characters.")
    if len(refs) > limits.max_files:
        raise ApiError(400, f"That is {len(refs)} pictures; I can look at {limits.max_files} at a time.")
    return MessageForm(text=text, files=(), refs=tuple(refs))


async def _read_file(part: BodyPartReader, limits: UploadLimits, count: int) -> Attachment:
    name = part.filename or "picture"
    if count >= limits.max_files:
        raise ApiError(400, f"That is too many pictures; I can look at {limits.max_files} at a time.")
    declared = (part.headers.get("Content-Type") or "application/octet-stream").lower()
    if not declared.startswith(_ACCEPTED_TYPES):
        raise ApiError(415, f"'{name}' is not a picture ({declared}); please send a PNG, JPEG or WebP image.")
    data = await _read_limited(part, limits.max_file_bytes)
    if data is None:
        raise ApiError(
            413,
            f"'{name}' is over the {_mb(limits.max_file_bytes)} limit; please send a smaller picture or a screenshot.",
        )
    if not data:
        raise ApiError(400, f"'{name}' is empty; please send the picture again.")
    return Attachment(data=data, filename=name, mime_type=declared)


async def _check_pictures(files: list[Attachment], limits: UploadLimits) -> None:
    for attachment in files:
        try:
            await asyncio.to_thread(
                check_picture,
                attachment.data,
                max_bytes=limits.max_file_bytes,
                max_pixels=limits.max_source_pixels,
                name=attachment.filename,
            )
        except PictureRejected as exc:
            raise ApiError(400, exc.user_message) from None


async def _read_json(request: web.Request, limits: UploadLimits) -> MessageForm:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict) or not isinstance(body.get("text", ""), str):
        raise ApiError(400, 'Send {"text": "...", "refs": ["SESSION/SHA256", ...]}.')
    text = body.get("text", "")
    raw_refs = body.get("refs", [])
    if not isinstance(raw_refs, list) or not all(isinstance(r, str) for r in raw_refs):
        raise ApiError(400, '"refs" must be a list of "SESSION/SHA256" strings.')
    return _checked_text(text, [parse_ref(r) for r in raw_refs], limits)
