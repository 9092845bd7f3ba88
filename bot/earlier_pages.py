"""Pages of a PDF sent earlier that a later question names: "what does page 12 say?", "第12页写了什么".

A PDF's first pages (or those its message named) are read when it is sent; the file itself is kept in
the picture store by its hash. A later question that names pages is about the conversation's most
recent PDF that has them all (else the most recent that has some, else the most recent); the named
pages it already read are in the history, the others are read now from the kept file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.picture_sources import SourceKind
from bot.store import TurnInfo

__all__ = ["EarlierPdf", "PageFollowUp", "conversation_pdfs", "page_follow_up"]


@dataclass(frozen=True)
class EarlierPdf:
    sha256: str
    name: str | None
    total: int  # pages in the document
    read: frozenset[int]  # pages already in the conversation
    document: int  # which PDF of the conversation, counted in the order they were first sent


@dataclass(frozen=True)
class PageFollowUp:
    pdf: EarlierPdf
    named: tuple[int, ...]  # the pages the question names
    unread: tuple[int, ...]  # named pages that exist and are not in the conversation yet
    missing: tuple[int, ...]  # named pages beyond its length
    several: bool  # the conversation has more than one PDF

    @property
    def present(self) -> bool:
        """Whether any named page exists (read earlier or to read now)."""
        return len(self.missing) < len(self.named)


def conversation_pdfs(history: Sequence[TurnInfo]) -> list[EarlierPdf]:
    """The PDFs the turns' pictures came from, the most recently used last."""
    found: dict[str, EarlierPdf] = {}
    for turn in history:
        for source in turn.image_sources:
            if source.kind is not SourceKind.PDF:
                continue
            known = found.pop(source.sha256, None)
            document = known.document if known is not None else len(found) + 1
            read = (known.read if known is not None else frozenset()) | frozenset(source.numbers)
            found[source.sha256] = EarlierPdf(source.sha256, source.name, source.total, read, document)
    return list(found.values())


def page_follow_up(history: Sequence[TurnInfo], wanted: Sequence[int]) -> PageFollowUp | None:
    """Which earlier PDF the pages `wanted` are of, and which of them to read now; None without a PDF."""
    pdfs = conversation_pdfs(history)
    if not pdfs or not wanted:
        return None
    last = max(wanted)
    chosen = next((p for p in reversed(pdfs) if p.total >= last), None)
    if chosen is None:
        chosen = next((p for p in reversed(pdfs) if p.total >= min(wanted)), pdfs[-1])
    unread = tuple(n for n in wanted if n <= chosen.total and n not in chosen.read)
    missing = tuple(n for n in wanted if n > chosen.total)
    return PageFollowUp(chosen, tuple(wanted), unread, missing, len(pdfs) > 1)
