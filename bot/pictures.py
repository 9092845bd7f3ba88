"""Checking pictures users send, and keeping them on disk named by their SHA-256.

The checks are the engine's own (`engine.pictures`: size, format allowlist, pixels, aspect, a
full decode under the process's cap on concurrent decodes), so a picture the bot accepts is one the
engine accepts; this module only words each rejection as one sentence for the user that says what
to do instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import assert_never

from bot.filemodes import make_private_dir
from bot.i18n import _
from bot.wording import file_label
from engine.pictures import PictureLimits, PictureProblem
from engine.pictures import PictureRejected as _Refused
from engine.pictures import check_picture as _check

__all__ = ["CheckedPicture", "PictureFiles", "PictureRejected", "check_picture"]


class PictureRejected(ValueError):
    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


@dataclass(frozen=True)
class CheckedPicture:
    sha256: str
    data: bytes = field(repr=False)
    mime_type: str
    width: int
    height: int


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB"


def _wording(refused: _Refused, label: str, max_bytes: int) -> str:
    size = _("{width}x{height} pixels").format(width=refused.width, height=refused.height)
    match refused.problem:
        case PictureProblem.EMPTY:
            return _("{label} is empty; please send the picture again.").format(label=label)
        case PictureProblem.TOO_MANY_BYTES:
            return _("{label} is {size}, over the {limit} limit; please send a smaller picture or a screenshot.").format(
                label=label, size=_mb(refused.size), limit=_mb(max_bytes)
            )
        case PictureProblem.TOO_MANY_PIXELS:
            if refused.width is None:
                return _("{label} is too large to read; please send a smaller picture.").format(label=label)
            return _("{label} is {size}, too large to read; please send a smaller picture.").format(label=label, size=size)
        case PictureProblem.UNSUPPORTED:
            return _(
                "{label} is not a file I can read; please send a picture (PNG, JPEG, WebP), a PDF or a video (MP4, MOV, WebM)."
            ).format(label=label)
        case PictureProblem.DAMAGED:
            return _("{label} looks damaged or incomplete; please send it again.").format(label=label)
        case PictureProblem.TOO_THIN:
            return _("{label} is {size}, too thin to read; please crop it to the part that matters.").format(label=label, size=size)
        case _:
            assert_never(refused.problem)


def check_picture(
    data: bytes, *, max_bytes: int, max_pixels: int, name: str | None = None, max_aspect: float = 200.0
) -> CheckedPicture:
    """Decode the picture fully once (in a worker thread, it can be slow) to prove it is usable.

    `max_aspect` above the engine's 200 for pictures the bot pads or tiles first (`bot.tiles`)."""
    try:
        info = _check(data, PictureLimits(max_bytes=max_bytes, max_pixels=max_pixels, max_aspect=max_aspect))
    except _Refused as refused:
        label = file_label(name)
        raise PictureRejected(_wording(refused, label, max_bytes)) from None
    return CheckedPicture(
        sha256=hashlib.sha256(data).hexdigest(), data=data, mime_type=info.mime_type, width=info.width, height=info.height
    )


class PictureFiles:
    """Pictures (and the PDFs of pages) stored as `<root>/<sha[:2]>/<sha>`; writes are atomic, so a
    crash leaves no half file."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def root(self) -> Path:
        return self._root

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self._root / sha256[:2] / sha256

    def _write(self, sha256: str, data: bytes) -> None:
        target = self.path(sha256)
        if target.exists():
            return
        make_private_dir(target.parent)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def save(self, picture: CheckedPicture) -> None:
        await asyncio.to_thread(self._write, picture.sha256, picture.data)

    async def save_file(self, sha256: str, data: bytes) -> None:
        """Another file kept with the pictures (a PDF whose pages they are), named the same way."""
        await asyncio.to_thread(self._write, sha256, data)

    async def load(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.path(sha256).read_bytes)
