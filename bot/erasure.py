"""Removing stored data: a user's own turns (/forget, `vlmbot data erase`) and whatever is older than
the retention period (`vlmbot data prune`, and daily while the bot runs).

Rows go first, in one transaction: the turns, the rows that belong to them (`TURN_CHILDREN`), the
sessions left empty, and the pictures no kept turn refers to (by `image_hashes`, or by `image_sources`
for the PDFs pages were read from). Files go after the commit. A crash before the commit changes
nothing; a crash after it leaves picture files that no row and no turn refers to, which the next prune
sweeps with every other such file older than a day (pictures are written a moment before the turn that
uses them, so younger ones are left alone).

/forget tells the user what goes as the files they sent (`Removal.files`, `bot.stored_files`): a PDF's
rendered pages count as the PDF, a long screenshot's tiles as one picture; the row counts are the operator's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.picture_sources import SourceKind, kept_files, made_from
from bot.pictures import PictureFiles
from bot.schema import FeedbackRow, ImageRow, SessionRow, TurnRow
from bot.stored_files import FileCounts, kind_of

__all__ = ["GRACE_S", "TURN_CHILDREN", "USER_ROWS", "DataRemoval", "Removal"]

log = logging.getLogger(__name__)

# Tables whose rows belong to a turn and go with it: (table, name of its column holding the turn id).
TURN_CHILDREN: tuple[tuple[type[Any], str], ...] = ((FeedbackRow, "turn_id"),)
# Tables with rows a user wrote about other things, erased with the user's data: (table, platform
# column, user id column): a user's votes on other people's answers.
USER_ROWS: tuple[tuple[type[Any], str, str], ...] = ((FeedbackRow, "platform", "user_id"),)

GRACE_S = 24 * 3600  # a picture file or row younger than this may be waiting for its turn
_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class Removal:
    """What was removed (or, for a plan, would be)."""

    turns: int = 0
    conversations: int = 0  # sessions that lost turns or were deleted
    sessions: int = 0  # sessions deleted because nothing was left in them
    pictures: int = 0
    picture_bytes: int = 0
    kept_pictures: int = 0  # pictures of removed turns that kept turns still use
    exports: int = 0
    stray_files: int = 0  # picture files no row and no turn referred to
    user_rows: int = 0  # the user's rows about other things: their votes on other people's answers
    files: FileCounts = FileCounts()  # the pictures' rows as the files users sent: pictures, PDFs, recordings
    files_kept: FileCounts = FileCounts()  # the kept pictures' likewise
    touched_sessions: tuple[str, ...] = field(default=(), repr=False)
    turn_ids: frozenset[int] = field(default=frozenset(), repr=False)

    def describe(self) -> str:
        """One line for the operator."""
        return (
            f"{self.turns} turn(s) in {self.conversations} conversation(s) ({self.sessions} deleted), "
            f"{self.pictures} picture(s) ({self.picture_bytes} bytes; {self.kept_pictures} kept, still in use), "
            f"{self.exports} export file(s), {self.stray_files} stray picture file(s), "
            f"{self.user_rows} vote(s) on other answers"
        )


@dataclass
class _Plan:
    turn_ids: set[int]
    touched: set[str]  # sessions of those turns
    candidates: set[str]  # pictures of those turns
    referenced: set[str] = field(default_factory=set)  # pictures of the turns that stay
    live: set[str] = field(default_factory=set)  # sessions with turns that stay
    made: dict[str, tuple[SourceKind, str]] = field(default_factory=dict)  # candidates made from a file sent


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(values)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class DataRemoval:
    """Erasure and retention over the store's database and the picture files."""

    def __init__(self, engine: AsyncEngine, pictures: PictureFiles, exports_dir: Path | None = None) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._pictures = pictures
        self._exports = exports_dir

    # --- one user's data --------------------------------------------------------------------------

    async def plan_user(self, platform: str, user_id: str) -> Removal:
        """What `erase_user` would remove now; removes nothing."""
        async with self._sessions() as db:
            plan = await self._plan(db, TurnRow.user_id == user_id, platform)
            owned = await self._owned(db, platform, user_id)
            doomed = {sid for sid in plan.touched | owned if sid not in plan.live}
            pictures, size = await self._picture_rows(db, plan.candidates - plan.referenced)
            files = await self._files(db, plan.candidates - plan.referenced, plan.made)
            files_kept = await self._files(db, plan.candidates & plan.referenced, plan.made)
            user_rows = 0
            for table, platform_column, user_column in USER_ROWS:
                mine = (getattr(table, platform_column) == platform, getattr(table, user_column) == user_id)
                user_rows += await db.scalar(select(func.count()).select_from(table).where(*mine)) or 0
        return replace(self._removal(plan, doomed, pictures, size), user_rows=user_rows, files=files, files_kept=files_kept)

    async def erase_user(self, platform: str, user_id: str) -> Removal:
        """Delete the user's turns on the platform, the answers in them, their pictures unless a kept turn
        uses one, and the sessions left empty; sessions the user started that keep others' turns stay,
        without the user's id as their owner."""
        async with self._sessions() as db, db.begin():
            plan = await self._plan(db, TurnRow.user_id == user_id, platform)
            owned = await self._owned(db, platform, user_id)
            doomed = {sid for sid in plan.touched | owned if sid not in plan.live}
            files = await self._files(db, plan.candidates - plan.referenced, plan.made)
            files_kept = await self._files(db, plan.candidates & plan.referenced, plan.made)
            pictures, size = await self._delete_rows(db, plan, doomed)
            kept_owned = [sid for sid in owned if sid not in doomed]
            for chunk in _chunks(kept_owned):
                await db.execute(update(SessionRow).where(SessionRow.id.in_(chunk)).values(owner_id=None))
            user_rows = 0
            for table, platform_column, user_column in USER_ROWS:
                mine = (getattr(table, platform_column) == platform, getattr(table, user_column) == user_id)
                user_rows += cast(CursorResult[Any], await db.execute(delete(table).where(*mine))).rowcount or 0
        removal = replace(self._removal(plan, doomed, pictures, size), user_rows=user_rows, files=files, files_kept=files_kept)
        exports = await asyncio.to_thread(self._remove_files, plan.candidates - plan.referenced, removal.touched_sessions)
        removal = replace(removal, exports=exports)
        log.info("erased %s:%s: %s", platform, user_id, removal.describe())
        return removal

    # --- retention --------------------------------------------------------------------------------

    async def prune(self, retention_days: int, *, grace_s: float = GRACE_S) -> Removal:
        """Delete turns (and exports) older than `retention_days` (0 keeps them), sessions left empty and
        untouched as long, and pictures and picture files no turn refers to."""
        now = _now()
        cutoff = now - timedelta(days=retention_days) if retention_days > 0 else None
        async with self._sessions() as db, db.begin():
            condition = TurnRow.created_at < cutoff if cutoff is not None else None
            plan = await self._plan(db, condition, None)
            doomed: set[str] = set()
            if cutoff is not None:
                idle = await db.scalars(select(SessionRow.id).where(SessionRow.updated_at < cutoff))
                doomed = {sid for sid in idle if sid not in plan.live}
            unused = await db.execute(select(ImageRow.sha256, ImageRow.created_at))
            young = now - timedelta(seconds=grace_s)
            orphans = {sha for sha, created in unused if sha not in plan.referenced and _aware(created) < young}
            plan.candidates |= orphans
            pictures, size = await self._delete_rows(db, plan, doomed)
        removal = self._removal(plan, doomed, pictures, size)
        exports = await asyncio.to_thread(self._remove_files, plan.candidates - plan.referenced, ())
        if cutoff is not None and self._exports is not None:
            exports += await asyncio.to_thread(_remove_older, self._exports, cutoff.timestamp())
        async with self._sessions() as db:
            rows = set(await db.scalars(select(ImageRow.sha256)))
        stray = await asyncio.to_thread(self._sweep, rows | plan.referenced, young.timestamp())
        removal = replace(removal, exports=exports, stray_files=stray)
        if removal.turns or removal.sessions or removal.pictures or removal.exports or stray:
            log.info("pruned: %s", removal.describe())
        return removal

    # --- internals --------------------------------------------------------------------------------

    async def _plan(self, db: AsyncSession, condition: ColumnElement[bool] | None, platform: str | None) -> _Plan:
        """The turns matching `condition` (on `platform`), and what the other turns still use."""
        plan = _Plan(set(), set(), set())
        columns = (TurnRow.id, TurnRow.session_id, TurnRow.image_hashes, TurnRow.image_sources)
        if condition is not None:
            query = select(*columns).where(condition)
            if platform is not None:
                query = query.join(SessionRow, SessionRow.id == TurnRow.session_id).where(SessionRow.platform == platform)
            for turn_id, session_id, hashes, sources in await db.execute(query):
                plan.turn_ids.add(turn_id)
                plan.touched.add(session_id)
                plan.candidates.update(hashes or ())
                plan.candidates.update(kept_files(sources))  # the PDFs its pages came from
                plan.made.update(made_from(sources))
        # Pictures are referenced from a JSON list per turn, which no index reaches: read them all.
        everything = await db.stream(select(*columns))
        async for turn_id, session_id, hashes, sources in everything:
            if turn_id not in plan.turn_ids:
                plan.referenced.update(hashes or ())
                plan.referenced.update(kept_files(sources))
                plan.live.add(session_id)
        return plan

    @staticmethod
    async def _owned(db: AsyncSession, platform: str, user_id: str) -> set[str]:
        query = select(SessionRow.id).where(SessionRow.platform == platform, SessionRow.owner_id == user_id)
        return set(await db.scalars(query))

    @staticmethod
    async def _picture_rows(db: AsyncSession, hashes: set[str]) -> tuple[int, int]:
        count = size = 0
        for chunk in _chunks(hashes):
            for (size_bytes,) in await db.execute(select(ImageRow.size_bytes).where(ImageRow.sha256.in_(chunk))):
                count, size = count + 1, size + size_bytes
        return count, size

    @staticmethod
    async def _files(db: AsyncSession, hashes: set[str], made: dict[str, tuple[SourceKind, str]]) -> FileCounts:
        """The pictures' rows as the files users sent, by their recorded mime type (`bot.stored_files`): a
        PDF's page is not counted (its PDF is), the tiles of one long screenshot count as one picture."""
        files: dict[str, str] = {}  # a file sent -> its mime type
        paged: set[str] = set()  # PDFs with pages among the rows
        for chunk in _chunks(hashes):
            for sha, mime_type in await db.execute(select(ImageRow.sha256, ImageRow.mime_type).where(ImageRow.sha256.in_(chunk))):
                match made.get(sha):
                    case None:
                        files[sha] = mime_type
                    case (SourceKind.PDF, whole):
                        paged.add(whole)
                    case (SourceKind.TILES, whole):
                        files[whole] = mime_type
        # A PDF sent before PDFs were kept (185e9a5) has no row of its own, only its pages: they stand for it.
        unkept = paged - files.keys()
        for chunk in _chunks(unkept):
            unkept -= set(await db.scalars(select(ImageRow.sha256).where(ImageRow.sha256.in_(chunk))))
        files.update(dict.fromkeys(unkept, "application/pdf"))
        return FileCounts.of(kind_of(mime_type) for mime_type in files.values())

    async def _delete_rows(self, db: AsyncSession, plan: _Plan, sessions: set[str]) -> tuple[int, int]:
        """Every row of the plan, inside the caller's transaction; the pictures' count and bytes."""
        for chunk in _chunks(plan.turn_ids):
            for table, column in TURN_CHILDREN:
                await db.execute(delete(table).where(getattr(table, column).in_(chunk)))
            await db.execute(delete(TurnRow).where(TurnRow.id.in_(chunk)))
        for chunk in _chunks(sessions):
            await db.execute(delete(SessionRow).where(SessionRow.id.in_(chunk)))
        unused = plan.candidates - plan.referenced
        pictures, size = await self._picture_rows(db, unused)
        for chunk in _chunks(unused):
            await db.execute(delete(ImageRow).where(ImageRow.sha256.in_(chunk)))
        return pictures, size

    @staticmethod
    def _removal(plan: _Plan, sessions: set[str], pictures: int, size: int) -> Removal:
        return Removal(
            turns=len(plan.turn_ids),
            conversations=len(plan.touched | sessions),
            sessions=len(sessions),
            pictures=pictures,
            picture_bytes=size,
            kept_pictures=len(plan.candidates & plan.referenced),
            touched_sessions=tuple(sorted(plan.touched | sessions)),
            turn_ids=frozenset(plan.turn_ids),
        )

    def _remove_files(self, hashes: Iterable[str], sessions: Sequence[str]) -> int:
        """Picture files of removed rows, and exports of the conversations touched; exports removed."""
        for sha in hashes:
            self._pictures.path(sha).unlink(missing_ok=True)
        removed = 0
        if self._exports is not None:
            for session_id in sessions:
                export = self._exports / f"vlmbot-session-{session_id[:8]}.json"
                if export.is_file():
                    export.unlink()
                    removed += 1
        return removed

    def _sweep(self, known: set[str], older_than: float) -> int:
        """Picture files (and half-written ones) that nothing refers to, older than `older_than`."""
        root = self._pictures.root
        if not root.is_dir():
            return 0
        removed = 0
        for folder in root.iterdir():
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for path in folder.iterdir():
                is_picture = len(path.name) == 64 and path.name.startswith(folder.name)
                if not (path.name.startswith(".tmp-") or (is_picture and path.name not in known)):
                    continue
                try:
                    if path.is_file() and path.stat().st_mtime < older_than:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; every stored time is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _remove_older(folder: Path, older_than: float) -> int:
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mtime < older_than:
            path.unlink(missing_ok=True)
            removed += 1
    return removed

