"""Checking pictures users send, and keeping them on disk named by their SHA-256.

Every rejection carries one sentence for the user that says what to do instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from bot.filemodes import make_private_dir

__all__ = ["CheckedPicture", "PictureFiles", "PictureRejected", "check_picture"]

_FORMAT_MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "MPO": "image/jpeg",
}


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


def check_picture(data: bytes, *, max_bytes: int, max_pixels: int, name: str | None = None) -> CheckedPicture:
    """Decode the picture fully once (in a worker thread, it can be slow) to prove it is usable."""
    label = f"'{name}'" if name else "The file"
    if not data:
        raise PictureRejected(f"{label} is empty; please send the picture again.")
    if len(data) > max_bytes:
        raise PictureRejected(
            f"{label} is {_mb(len(data))}, over the {_mb(max_bytes)} limit; please send a smaller picture or a screenshot."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt = image.format or ""
                width, height = image.size
                if width * height > max_pixels:
                    raise PictureRejected(
                        f"{label} is {width}x{height} pixels, too large to read; please send a smaller picture."
                    )
                if fmt not in _FORMAT_MIME:
                    raise PictureRejected(f"{label} is a {fmt or 'unknown'} file; please send a PNG, JPEG or WebP picture.")
                image.load()
    except PictureRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PictureRejected(f"{label} is too large to read; please send a smaller picture.") from None
    except UnidentifiedImageError:
        raise PictureRejected(f"{label} is not a picture I can read; please send a PNG, JPEG or WebP image.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PictureRejected(f"{label} looks damaged or incomplete ({exc}); please send it again.") from None
    if min(width, height) < 1 or max(width, height) / min(width, height) > 200:
        raise PictureRejected(f"{label} is {width}x{height} pixels, too thin to read; please crop it to the part that matters.")
    return CheckedPicture(
        sha256=hashlib.sha256(data).hexdigest(), data=data, mime_type=_FORMAT_MIME[fmt], width=width, height=height
    )


class PictureFiles:
    """Pictures stored as `<root>/<sha[:2]>/<sha>`; writes are atomic, so a crash leaves no half file."""

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

    async def load(self, sha256: str) -> bytes:
        return await asyncio.to_thread(self.path(sha256).read_bytes)
