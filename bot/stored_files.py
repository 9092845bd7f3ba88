"""What the files in the picture store are, told by the mime type each was recorded with (`images.mime_type`,
`Store.record_image`): pictures, PDFs kept for their pages, and screen recordings. /forget counts them
for the user (`bot.erasure`, `bot.wording.forget_preview`) and the metrics for the operator (`bot.metrics`).

An animated GIF is read as a video but stored as the `image/gif` it is, so it counts as a picture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

__all__ = ["FileCounts", "FileKind", "kind_of"]


class FileKind(StrEnum):
    PICTURE = "picture"
    PDF = "pdf"
    VIDEO = "video"  # a screen recording (MP4, MOV, WebM)


def kind_of(mime_type: str) -> FileKind:
    mime = mime_type.lower()
    if mime == "application/pdf":
        return FileKind.PDF
    if mime.startswith("video/"):
        return FileKind.VIDEO
    return FileKind.PICTURE


@dataclass(frozen=True)
class FileCounts:
    pictures: int = 0
    pdfs: int = 0
    videos: int = 0

    @property
    def total(self) -> int:
        return self.pictures + self.pdfs + self.videos

    @classmethod
    def of(cls, kinds: Iterable[FileKind]) -> FileCounts:
        pictures = pdfs = videos = 0
        for kind in kinds:
            match kind:
                case FileKind.PICTURE:
                    pictures += 1
                case FileKind.PDF:
                    pdfs += 1
                case FileKind.VIDEO:
                    videos += 1
                case _:
                    assert_never(kind)
        return cls(pictures, pdfs, videos)
