"""A conversation's stored picture or recording, sent from its file.

aiohttp's `FileResponse` streams the file and honours Range (a clip in the history can be sought
before it has loaded: the browser asks for the bytes it needs), If-None-Match and If-Modified-Since.
What it would answer in plain text is answered here first, as JSON like every /api/ refusal: a file
that is gone or cannot be read (404, as a missing one), a Range that is malformed or asks for bytes the
file does not have (416, with the file's length in Content-Range as RFC 9110 wants).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from bot.conversations import Conversations
from bot.i18n import N_, _

from .errors import ApiError
from .views import HEAD_BYTES, image_type

__all__ = ["picture_response"]

log = logging.getLogger(__name__)

CACHE_CONTROL = "private, max-age=86400"  # a file named by its hash never changes; only its owner sees it
NO_SUCH_PICTURE = N_("There is no such picture in this conversation.")
MISSING = N_("That picture is missing from storage.")
_EMPTY_SUFFIX = re.compile(r"bytes=-0+", re.ASCII | re.IGNORECASE)  # "the last 0 bytes": nothing to send


@dataclass(frozen=True)
class _Examined:
    size: int
    head: bytes  # enough of the file for its type (`image_type`)


def _examine(path: Path) -> _Examined:
    """The file's length and first bytes; OSError when it is gone, unreadable or not a regular file."""
    status = path.stat()
    if not stat.S_ISREG(status.st_mode):  # opening a FIFO would block the thread
        raise IsADirectoryError(f"{path} is not a regular file")
    with path.open("rb") as handle:
        return _Examined(os.fstat(handle.fileno()).st_size, handle.read(HEAD_BYTES))


def _check_range(request: web.Request, size: int) -> None:
    """Refuse a Range header FileResponse would answer with an empty 416 (or, for "bytes=-0", the whole file)."""
    raw = request.headers.get(hdrs.RANGE)
    if raw is None:
        return
    try:
        wanted = request.http_range  # "bytes=a-b", "bytes=a-", "bytes=-n"; several ranges are not served
    except ValueError:
        satisfiable = False
    else:
        start = wanted.start or 0
        satisfiable = start < size if start >= 0 else size > 0
        satisfiable = satisfiable and not _EMPTY_SUFFIX.fullmatch(raw)
    if not satisfiable:
        raise ApiError(
            416,
            _("That byte range cannot be sent; the file has {size} bytes.").format(size=size),
            headers={hdrs.CONTENT_RANGE: f"bytes */{size}"},
        )


async def picture_response(
    request: web.Request, conversations: Conversations, session_id: str, sha: str
) -> web.StreamResponse:
    """The file, when a turn of the session carries it; 404 otherwise (whoever else's it is)."""
    if not await conversations.store.image_in_session(sha, session_id):
        raise ApiError(404, _(NO_SUCH_PICTURE))
    path = conversations.pictures.path(sha)
    try:
        examined = await asyncio.to_thread(_examine, path)
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError):
            log.warning("session %s: stored file %s cannot be read: %s", session_id, sha, exc)
        raise ApiError(404, _(MISSING)) from None
    _check_range(request, examined.size)
    return web.FileResponse(
        path,
        headers={hdrs.CONTENT_TYPE: image_type(examined.head), hdrs.CACHE_CONTROL: CACHE_CONTROL},
    )
