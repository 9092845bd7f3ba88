"""Where a turn's pictures came from when they are not the files the user sent: a PDF's pages, a long
screenshot's tiles. Stored with the turn (`turns.image_sources`), listed by /export, and used to name
the pictures in the prompt: "Page 3", "Picture 2, part 1".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import count
from typing import Any, assert_never

__all__ = ["PictureSource", "SourceKind", "kept_files", "made_from", "picture_names"]


class SourceKind(StrEnum):
    PDF = "pdf"  # parts are pages; numbers are page numbers
    TILES = "tiles"  # parts are tiles of one picture, in reading order; numbers count from 1


@dataclass(frozen=True)
class PictureSource:
    kind: SourceKind
    sha256: str  # of the file the user sent
    name: str | None
    parts: tuple[str, ...]  # hashes of the pictures made from it, in prompt order
    numbers: tuple[int, ...]  # page or part number of each part
    total: int  # pages in the PDF, or tiles the whole picture needs
    # Pages read later from a PDF sent earlier, when the conversation has several: which of them it is,
    # counted in the order they were first sent (`bot.earlier_pages`); names them "Document d, page n".
    document: int | None = None

    def to_json(self) -> dict[str, Any]:
        key = "page" if self.kind is SourceKind.PDF else "part"
        value: dict[str, Any] = {
            "kind": self.kind.value,
            "sha256": self.sha256,
            "name": self.name,
            "total": self.total,
            "parts": [{key: number, "sha256": sha} for number, sha in zip(self.numbers, self.parts, strict=True)],
        }
        if self.document is not None:
            value["document"] = self.document
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PictureSource:
        kind = SourceKind(value["kind"])
        key = "page" if kind is SourceKind.PDF else "part"
        parts = value.get("parts") or []
        return cls(
            kind=kind,
            sha256=str(value["sha256"]),
            name=value.get("name"),
            parts=tuple(str(p["sha256"]) for p in parts),
            numbers=tuple(int(p[key]) for p in parts),
            total=int(value.get("total") or len(parts)),
            document=None if value.get("document") is None else int(value["document"]),
        )


def kept_files(entries: Sequence[dict[str, Any]] | None) -> set[str]:
    """The files a turn's stored `image_sources` keep in the picture store besides its pictures: its PDFs
    (read again when a later question names other pages); a long screenshot is kept as its tiles only."""
    return {str(entry["sha256"]) for entry in entries or () if entry.get("kind") == SourceKind.PDF.value}


def made_from(entries: Sequence[dict[str, Any]] | None) -> dict[str, tuple[SourceKind, str]]:
    """The pictures a turn's stored `image_sources` made from a file the user sent, each by its hash: how
    (a PDF's page, a long screenshot's tile) and the hash of that file (/forget counts them as the file)."""
    made: dict[str, tuple[SourceKind, str]] = {}
    for entry in entries or ():
        source = PictureSource.from_json(entry)
        for part in source.parts:
            made[part] = (source.kind, source.sha256)
    return made


def picture_names(hashes: Sequence[str], sources: Sequence[PictureSource]) -> list[str]:
    """A name for each of one message's pictures, in order: "Picture N" for a picture as sent,
    "Picture N, part k" for a tile, "Page n" for a PDF's page ("Document d, page n" with several PDFs)."""
    used = [0] * len(sources)  # parts of each source already named
    documents = _document_numbers(sources)
    several = len(documents) > 1 or any(s.document is not None for s in sources)
    names: list[str] = []
    picture = 0
    previous: int | None = None
    for sha in hashes:
        index = next(
            (i for i, s in enumerate(sources) if used[i] < len(s.parts) and s.parts[used[i]] == sha), None
        )
        if index is None:
            picture += 1
            names.append(f"Picture {picture}")
            previous = None
            continue
        source = sources[index]
        number = source.numbers[used[index]]
        first = used[index] == 0 or previous != index
        used[index] += 1
        previous = index
        match source.kind:
            case SourceKind.PDF:
                names.append(f"Document {documents[source.sha256]}, page {number}" if several else f"Page {number}")
            case SourceKind.TILES:
                picture += first
                names.append(f"Picture {picture}, part {number}")
            case _:
                assert_never(source.kind)
    return names


def _document_numbers(sources: Sequence[PictureSource]) -> dict[str, int]:
    """A number for each PDF of one message, by its hash: the conversation's when the source has one
    (pages read later, `bot.earlier_pages`), else the next number free, in the order they were sent."""
    numbers = {s.sha256: s.document for s in sources if s.kind is SourceKind.PDF and s.document is not None}
    for source in sources:
        if source.kind is SourceKind.PDF and source.sha256 not in numbers:
            numbers[source.sha256] = next(n for n in count(1) if n not in numbers.values())
    return numbers
