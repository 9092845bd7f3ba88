"""Sessions and turns in the database (SQLAlchemy 2 async); returns frozen values, never ORM rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import delete, event, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.sql.elements import ColumnElement

from bot.migrate import upgrade_database
from bot.picture_sources import PictureSource
from bot.schema import Delivery, FeedbackRow, ImageRow, SessionRow, TurnRow
from bot.turn_notes import TurnNote
from bot.votes import Vote, VoteOutcome

__all__ = ["SessionInfo", "Store", "TurnInfo", "TurnStats", "VoteInfo", "open_store"]


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone=True columns; every stored time is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _stamp(value: datetime | None) -> datetime:
    """A time that is always written (a NOT NULL column), as an aware datetime."""
    aware = _aware(value)
    assert aware is not None
    return aware


def _count(result: Any) -> int:
    """Rows an UPDATE or DELETE touched."""
    return cast(CursorResult[Any], result).rowcount or 0


@dataclass(frozen=True)
class SessionInfo:
    id: str
    platform: str
    thread_key: str
    status: str
    title: str | None
    owner_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TurnInfo:
    id: int
    session_id: str
    user_id: str | None
    user_text: str
    command: str | None
    image_hashes: tuple[str, ...]
    answer: str | None
    status: str
    in_context: bool
    error: str | None
    queue_wait_ms: int | None
    ttft_ms: int | None
    latency_ms: int | None
    prompt_tokens: int | None
    output_tokens: int | None
    model: str | None
    created_at: datetime
    finished_at: datetime | None
    image_sources: tuple[PictureSource, ...] = ()  # the PDFs and long screenshots `image_hashes` came from
    notes: tuple[TurnNote, ...] = ()  # the notices and refused files the answer came with, in order


@dataclass(frozen=True)
class TurnStats:
    queue_wait_ms: int | None = None
    ttft_ms: int | None = None
    latency_ms: int | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class VoteInfo:
    turn_id: int
    platform: str
    user_id: str
    vote: Vote
    created_at: datetime  # the user's first vote on the turn
    voted_at: datetime  # the current vote


def _session(row: SessionRow) -> SessionInfo:
    return SessionInfo(
        id=row.id,
        platform=row.platform,
        thread_key=row.thread_key,
        status=row.status,
        title=row.title,
        owner_id=row.owner_id,
        created_at=_stamp(row.created_at),
        updated_at=_stamp(row.updated_at),
    )


def _turn(row: TurnRow) -> TurnInfo:
    return TurnInfo(
        id=row.id,
        session_id=row.session_id,
        user_id=row.user_id,
        user_text=row.user_text,
        command=row.command,
        image_hashes=tuple(row.image_hashes or ()),
        answer=row.answer,
        status=row.status,
        in_context=row.in_context,
        error=row.error,
        queue_wait_ms=row.queue_wait_ms,
        ttft_ms=row.ttft_ms,
        latency_ms=row.latency_ms,
        prompt_tokens=row.prompt_tokens,
        output_tokens=row.output_tokens,
        model=row.model,
        created_at=_stamp(row.created_at),
        finished_at=_aware(row.finished_at),
        image_sources=tuple(PictureSource.from_json(entry) for entry in row.image_sources or ()),
        notes=tuple(TurnNote.from_json(entry) for entry in row.notes or ()),
    )


def _notes(notes: Sequence[TurnNote]) -> list[dict[str, Any]] | None:
    return [note.to_json() for note in notes] or None


def _vote(row: FeedbackRow) -> VoteInfo:
    return VoteInfo(
        turn_id=row.turn_id,
        platform=row.platform,
        user_id=row.user_id,
        vote=row.vote,
        created_at=_stamp(row.created_at),
        voted_at=_stamp(row.voted_at),
    )


class Store:
    """All database access of the bot. Create with `open_store`."""

    def __init__(self, engine: AsyncEngine, instance_id: str | None = None) -> None:
        self._engine = engine
        self._instance = instance_id
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    # --- sessions ------------------------------------------------------------------------------

    async def active_session(self, platform: str, thread_key: str, owner_id: str | None = None) -> SessionInfo:
        """The thread's active session, created if there is none (safe against racing replicas)."""
        for _ in range(3):
            async with self._sessions() as db:
                row = await db.scalar(
                    select(SessionRow).where(
                        SessionRow.platform == platform,
                        SessionRow.thread_key == thread_key,
                        SessionRow.status == "active",
                    )
                )
                if row is not None:
                    return _session(row)
                now = _now()
                row = SessionRow(
                    id=str(uuid.uuid4()),
                    platform=platform,
                    thread_key=thread_key,
                    status="active",
                    owner_id=owner_id,
                    created_at=now,
                    updated_at=now,
                )
                db.add(row)
                try:
                    await db.commit()
                except IntegrityError:
                    await db.rollback()  # another replica created it first: read theirs
                    continue
                return _session(row)
        raise RuntimeError(f"could not create a session for {platform}:{thread_key}")

    async def get_session(self, session_id: str) -> SessionInfo | None:
        async with self._sessions() as db:
            row = await db.get(SessionRow, session_id)
            return _session(row) if row else None

    async def archive_session(self, session_id: str) -> None:
        async with self._sessions() as db:
            await db.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id)
                .values(status="archived", archived_at=_now(), updated_at=_now())
            )
            await db.commit()

    async def rename_session(self, session_id: str, title: str) -> None:
        async with self._sessions() as db:
            await db.execute(update(SessionRow).where(SessionRow.id == session_id).values(title=title, updated_at=_now()))
            await db.commit()

    async def list_sessions(
        self,
        *,
        platform: str | None = None,
        owner_id: str | None = None,
        thread_key: str | None = None,
        search: str | None = None,
        active_only: bool = False,
        limit: int = 100,
    ) -> list[SessionInfo]:
        """Newest first. `search` matches the title and the turns' text."""
        query = select(SessionRow).order_by(SessionRow.updated_at.desc()).limit(limit)
        if platform is not None:
            query = query.where(SessionRow.platform == platform)
        if owner_id is not None:
            query = query.where(SessionRow.owner_id == owner_id)
        if thread_key is not None:
            query = query.where(SessionRow.thread_key == thread_key)
        if active_only:
            query = query.where(SessionRow.status == "active")
        if search:
            pattern = f"%{search.lower()}%"
            matching_turns = select(TurnRow.session_id).where(
                or_(func.lower(TurnRow.user_text).like(pattern), func.lower(TurnRow.answer).like(pattern))
            )
            query = query.where(or_(func.lower(SessionRow.title).like(pattern), SessionRow.id.in_(matching_turns)))
        async with self._sessions() as db:
            return [_session(row) for row in await db.scalars(query)]

    # --- turns ---------------------------------------------------------------------------------

    async def add_turn(
        self,
        session_id: str,
        *,
        user_id: str | None,
        text: str,
        image_hashes: Sequence[str],
        status: str = "pending",
        command: str | None = None,
        image_sources: Sequence[PictureSource] = (),
        notes: Sequence[TurnNote] = (),
    ) -> TurnInfo:
        now = _now()
        async with self._sessions() as db:
            row = TurnRow(
                session_id=session_id,
                user_id=user_id,
                user_text=text,
                command=command,
                instance=self._instance,
                image_hashes=list(image_hashes),
                image_sources=[source.to_json() for source in image_sources] or None,
                notes=_notes(notes),
                status=status,
                in_context=True,
                created_at=now,
            )
            db.add(row)
            await db.execute(update(SessionRow).where(SessionRow.id == session_id).values(updated_at=now))
            await db.commit()
            return _turn(row)

    async def finish_turn(
        self,
        turn_id: int,
        *,
        status: str,
        answer: str | None = None,
        error: str | None = None,
        stats: TurnStats = TurnStats(),
        notes: Sequence[TurnNote] | None = None,
    ) -> None:
        """`notes`: every note of the turn (replacing those it was added with); None keeps them."""
        kept: dict[str, Any] = {} if notes is None else {"notes": _notes(notes)}
        async with self._sessions() as db:
            await db.execute(
                update(TurnRow)
                .where(TurnRow.id == turn_id)
                .values(
                    **kept,
                    status=status,
                    answer=answer,
                    error=error,
                    queue_wait_ms=stats.queue_wait_ms,
                    ttft_ms=stats.ttft_ms,
                    latency_ms=stats.latency_ms,
                    prompt_tokens=stats.prompt_tokens,
                    output_tokens=stats.output_tokens,
                    model=stats.model,
                    finished_at=_now(),
                )
            )
            await db.commit()

    async def set_notes(self, turn_id: int, notes: Sequence[TurnNote]) -> None:
        """Every note of the turn, e.g. with those a preset's files came with after the answer."""
        async with self._sessions() as db:
            await db.execute(update(TurnRow).where(TurnRow.id == turn_id).values(notes=_notes(notes)))
            await db.commit()

    async def get_turn(self, turn_id: int) -> TurnInfo | None:
        async with self._sessions() as db:
            row = await db.get(TurnRow, turn_id)
            return _turn(row) if row else None

    async def turns(self, session_id: str, *, in_context_only: bool = False) -> list[TurnInfo]:
        query = select(TurnRow).where(TurnRow.session_id == session_id).order_by(TurnRow.id)
        if in_context_only:
            query = query.where(TurnRow.in_context.is_(True))
        async with self._sessions() as db:
            return [_turn(row) for row in await db.scalars(query)]

    async def drop_from_context(self, turn_id: int) -> None:
        async with self._sessions() as db:
            await db.execute(update(TurnRow).where(TurnRow.id == turn_id).values(in_context=False))
            await db.commit()

    async def mark_interrupted(self, *, stale_after_s: float | None = None) -> int:
        """Pending turns left by a crash or kill become `interrupted`; returns how many.

        Only this instance's own turns, and with `stale_after_s` any turn pending longer than that:
        other replicas sharing the database may be answering theirs right now.
        """
        condition: ColumnElement[bool] = TurnRow.instance.is_(None)  # written before instances were recorded
        if self._instance is not None:
            condition = or_(condition, TurnRow.instance == self._instance)
        if stale_after_s is not None:
            condition = or_(condition, TurnRow.created_at < _now() - timedelta(seconds=stale_after_s))
        async with self._sessions() as db:
            result = await db.execute(
                update(TurnRow)
                .where(TurnRow.status == "pending", condition)
                .values(status="interrupted", finished_at=_now())
            )
            await db.commit()
            return _count(result)

    # --- images and deliveries -----------------------------------------------------------------

    async def record_image(self, sha256: str, *, mime_type: str, width: int, height: int, size_bytes: int) -> None:
        async with self._sessions() as db:
            if await db.get(ImageRow, sha256) is not None:
                return
            db.add(
                ImageRow(
                    sha256=sha256, mime_type=mime_type, width=width, height=height, size_bytes=size_bytes, created_at=_now()
                )
            )
            try:
                await db.commit()
            except IntegrityError:
                await db.rollback()

    async def mime_types(self, hashes: Collection[str]) -> dict[str, str]:
        """The type each stored file among `hashes` was recorded with (`record_image`), in one query; a hash
        with no row is left out."""
        if not hashes:
            return {}
        query = select(ImageRow.sha256, ImageRow.mime_type).where(ImageRow.sha256.in_(list(hashes)))
        async with self._sessions() as db:
            return {sha256: mime_type for sha256, mime_type in (await db.execute(query)).all()}

    async def image_in_session(self, sha256: str, session_id: str) -> bool:
        """Whether any turn of the session carries the picture (for serving images to owners only).
        Reads only the turns' hash lists (a page with many pictures asks once per picture)."""
        query = select(TurnRow.image_hashes).where(TurnRow.session_id == session_id)
        async with self._sessions() as db:
            return any(sha256 in (hashes or ()) for hashes in await db.scalars(query))

    async def prune_deliveries(self, *, older_than_s: float) -> int:
        """Forget claimed deliveries older than any platform redelivers (Telegram keeps updates 24 h)."""
        async with self._sessions() as db:
            result = await db.execute(
                delete(Delivery).where(Delivery.created_at < _now() - timedelta(seconds=older_than_s))
            )
            await db.commit()
            return _count(result)

    async def claim_delivery(self, platform: str, delivery_id: str) -> bool:
        """True the first time a delivery id is claimed, False for every redelivery."""
        async with self._sessions() as db:
            db.add(Delivery(platform=platform, delivery_id=delivery_id, created_at=_now()))
            try:
                await db.commit()
            except IntegrityError:
                await db.rollback()
                return False
            return True

    # --- feedback ------------------------------------------------------------------------------

    async def vote(self, turn_id: int, *, platform: str, user_id: str, vote: Vote) -> VoteOutcome:
        """Record the user's vote on the turn, replacing their earlier one: RECORDED, CHANGED or UNCHANGED.

        One statement, INSERT ... ON CONFLICT DO UPDATE, so racing replicas or double clicks keep one
        row per user and turn. The update only happens when the vote differs (else no row comes back:
        UNCHANGED); a row that comes back with our own `created_at` was inserted by us (RECORDED).
        """
        now = _now()
        insert = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        values = insert(FeedbackRow).values(
            turn_id=turn_id, platform=platform, user_id=user_id, vote=vote, created_at=now, voted_at=now
        )
        statement = values.on_conflict_do_update(
            index_elements=[FeedbackRow.turn_id, FeedbackRow.platform, FeedbackRow.user_id],
            set_={"vote": values.excluded.vote, "voted_at": values.excluded.voted_at},
            where=FeedbackRow.vote != values.excluded.vote,
        ).returning(FeedbackRow.created_at)
        async with self._sessions() as db:
            created = (await db.execute(statement)).scalar_one_or_none()
            await db.commit()
        if created is None:
            return VoteOutcome.UNCHANGED
        return VoteOutcome.RECORDED if _aware(created) == now else VoteOutcome.CHANGED

    async def votes_in_session(self, session_id: str) -> dict[int, tuple[VoteInfo, ...]]:
        """Every vote on the session's turns, by turn id, oldest first."""
        query = (
            select(FeedbackRow)
            .join(TurnRow, TurnRow.id == FeedbackRow.turn_id)
            .where(TurnRow.session_id == session_id)
            .order_by(FeedbackRow.voted_at, FeedbackRow.id)
        )
        votes: dict[int, list[VoteInfo]] = {}
        async with self._sessions() as db:
            for row in await db.scalars(query):
                votes.setdefault(row.turn_id, []).append(_vote(row))
        return {turn_id: tuple(entries) for turn_id, entries in votes.items()}

    async def vote_counts(self, since: datetime) -> dict[tuple[str, Vote], int]:
        """How many current votes were cast at or after `since`, by (platform, vote)."""
        query = (
            select(FeedbackRow.platform, FeedbackRow.vote, func.count())
            .where(FeedbackRow.voted_at >= since)
            .group_by(FeedbackRow.platform, FeedbackRow.vote)
        )
        async with self._sessions() as db:
            return {(platform, vote): count for platform, vote, count in (await db.execute(query)).all()}

    async def votes_since(self, since: datetime, *, vote: Vote) -> list[tuple[VoteInfo, TurnInfo]]:
        """The current votes of one kind cast at or after `since`, with their turns, oldest first."""
        query = (
            select(FeedbackRow, TurnRow)
            .join(TurnRow, TurnRow.id == FeedbackRow.turn_id)
            .where(FeedbackRow.voted_at >= since, FeedbackRow.vote == vote)
            .order_by(FeedbackRow.voted_at, FeedbackRow.id)
        )
        async with self._sessions() as db:
            return [(_vote(feedback), _turn(turn)) for feedback, turn in (await db.execute(query)).all()]

    # --- for the web chat's lists (adapters/web) ---------------------------------------------

    async def first_questions(self, session_ids: Sequence[str]) -> dict[str, str]:
        """The first question of each session that has one: the sidebar's title for unnamed sessions."""
        if not session_ids:
            return {}
        first = (
            select(TurnRow.session_id, func.min(TurnRow.id).label("turn_id"))
            .where(TurnRow.session_id.in_(list(session_ids)), TurnRow.user_text != "")
            .group_by(TurnRow.session_id)
            .subquery()
        )
        query = select(TurnRow.session_id, TurnRow.user_text).join(first, TurnRow.id == first.c.turn_id)
        async with self._sessions() as db:
            return {session_id: text for session_id, text in (await db.execute(query)).all()}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


@asynccontextmanager
async def open_store(url: str, *, migrate: bool = True, instance_id: str | None = None) -> AsyncIterator[Store]:
    """Open the database, apply migrations, and dispose of the engine on exit."""
    engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    store = Store(engine, instance_id)
    try:
        if migrate:
            await upgrade_database(engine)
        yield store
    finally:
        await store.close()
