"""The one check every picture passes before anything decodes it (engine, API server and bot alike).

A picture is accepted when it is at most `max_bytes` long, is one of the allowed formats (PNG,
JPEG, WebP, GIF, BMP, TIFF), has at most `max_pixels` pixels and an aspect ratio of at most
`max_aspect` (the Qwen resize refuses more than 200). Pillow is only ever asked for the allowed
formats (`Image.open(formats=...)`), so EPS/PostScript (Ghostscript), SVG, PDF and the other plugins
never see the bytes. The header checks cost nothing; a full decode runs under a process-wide cap of
`DECODE_SLOTS` concurrent decodes, so a burst of large pictures cannot take all the memory.

Every refusal is a `PictureRejected` with a closed `PictureProblem` and the facts behind it; its
`message` is one sentence for an API client. The bot words its own replies from the same facts.
Torch-free: the bot and the API server import it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image

__all__ = [
    "ALLOWED_FORMATS",
    "DECODE_SLOTS",
    "DEFAULT_LIMITS",
    "PictureInfo",
    "PictureLimits",
    "PictureProblem",
    "PictureRejected",
    "check_picture",
    "decode_slot",
    "open_picture",
]

# Pillow format name -> MIME type. MPO is what Pillow calls a JPEG with a multi-picture extension
# (many phone cameras); the JPEG plugin opens it.
_MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_ALLOWED_NAMES = "PNG, JPEG, WebP, GIF, BMP or TIFF"

# Full decodes running at once in this process (bot checks and engine preparation together): a
# 64-megapixel PNG takes about 200 MB while it is decoded.
DECODE_SLOTS = 2
_decoding = threading.BoundedSemaphore(DECODE_SLOTS)


class PictureProblem(StrEnum):
    EMPTY = "empty"
    TOO_MANY_BYTES = "too_many_bytes"
    TOO_MANY_PIXELS = "too_many_pixels"
    UNSUPPORTED = "unsupported"  # not a picture, or a format outside the allowlist
    DAMAGED = "damaged"  # an allowed format whose data does not decode (truncated, corrupt)
    TOO_THIN = "too_thin"  # aspect ratio beyond `max_aspect`


@dataclass(frozen=True)
class PictureLimits:
    max_bytes: int = 20 * 1024**2
    max_pixels: int = 64_000_000  # width x height of the picture as stored, before any resize
    max_aspect: float = 200.0


DEFAULT_LIMITS = PictureLimits()


@dataclass(frozen=True)
class PictureInfo:
    format: str  # Pillow's name: PNG, JPEG, MPO, WEBP, GIF, BMP, TIFF
    mime_type: str
    width: int
    height: int


class PictureRejected(ValueError):
    """A picture refused; `message` is one sentence for an API client, the fields are for other wordings."""

    def __init__(
        self,
        problem: PictureProblem,
        message: str,
        *,
        size: int = 0,
        width: int | None = None,
        height: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message
        self.size = size
        self.width = width
        self.height = height
        self.detail = detail


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB"


@contextmanager
def decode_slot() -> Iterator[None]:
    """Hold one of the process's `DECODE_SLOTS` while decoding a picture."""
    with _decoding:
        yield


@contextmanager
def open_picture(data: bytes, limits: PictureLimits) -> Iterator[Image.Image]:
    """The picture opened lazily (header read, nothing decoded) once every cheap check passed.

    Decoding errors of the caller's own `load()`/`resize()` inside the block become
    `PictureRejected(DAMAGED)`, so callers handle one exception type.
    """
    if not data:
        raise PictureRejected(PictureProblem.EMPTY, "The picture is empty.")
    if len(data) > limits.max_bytes:
        raise PictureRejected(
            PictureProblem.TOO_MANY_BYTES,
            f"The picture is {_mb(len(data))}, over the {_mb(limits.max_bytes)} limit.",
            size=len(data),
        )
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:  # over twice Pillow's own limit: the header alone says so
        raise PictureRejected(
            PictureProblem.TOO_MANY_PIXELS, "The picture has too many pixels to decode safely.", size=len(data)
        ) from None
    except Exception as exc:
        # Pillow's identification raises many types on hostile input (UnidentifiedImageError, but
        # also struct.error, EOFError, ValueError...): none of them may escape as a server error.
        raise PictureRejected(
            PictureProblem.UNSUPPORTED,
            f"The data is not a picture in an accepted format ({_ALLOWED_NAMES}).",
            size=len(data),
            detail=f"{type(exc).__name__}: {exc}",
        ) from None
    with image:
        width, height = image.size
        if image.format not in _MIME:  # the allowlist above makes this unreachable; kept as a guard
            raise PictureRejected(
                PictureProblem.UNSUPPORTED, f"{image.format} pictures are not accepted ({_ALLOWED_NAMES} only).",
                size=len(data),
            )
        if width * height > limits.max_pixels:
            raise PictureRejected(
                PictureProblem.TOO_MANY_PIXELS,
                f"The picture is {width}x{height} pixels, over the limit of {limits.max_pixels:,} pixels.",
                size=len(data), width=width, height=height,
            )
        if min(width, height) < 1 or max(width, height) / min(width, height) > limits.max_aspect:
            raise PictureRejected(
                PictureProblem.TOO_THIN,
                f"The picture is {width}x{height} pixels; sides more than {limits.max_aspect:g} times apart are "
                "not accepted.",
                size=len(data), width=width, height=height,
            )
        try:
            yield image
        except PictureRejected:
            raise
        except (MemoryError, RecursionError):
            raise
        except Exception as exc:
            # The decoders report damage as OSError ("image file is truncated"), SyntaxError,
            # ValueError, struct.error, IndexError, EOFError, ZeroDivisionError...
            raise PictureRejected(
                PictureProblem.DAMAGED,
                f"The {image.format} picture is damaged or incomplete ({_short(exc)}).",
                size=len(data), width=width, height=height, detail=f"{type(exc).__name__}: {exc}",
            ) from None


def check_picture(data: bytes, limits: PictureLimits) -> PictureInfo:
    """Every check, and a full decode (slow for large pictures: call it from a worker thread)."""
    with open_picture(data, limits) as image:
        info = PictureInfo(image.format or "", _MIME[image.format or ""], *image.size)
        with decode_slot():
            image.load()
    return info


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
