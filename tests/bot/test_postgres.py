"""The store and the migrations on PostgreSQL as well as SQLite (see conftest.py for enabling PostgreSQL).

Bot replicas share one database: each test that races opens two `Store`s (two connection pools,
as two processes would) on the same database.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from bot.messages import Attachment, IncomingMessage, Text
from bot.migrate import downgrade_database, upgrade_database
from bot.store import TurnStats, open_store
from bot.votes import Vote, VoteOutcome
from tests.conftest import picture_bytes

VLMBOT = str(Path(sys.executable).with_name("vlmbot"))
TABLES = {"sessions", "turns", "images", "deliveries", "feedback", "alembic_version"}


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


# --- migrations ------------------------------------------------------------------------------


async def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        await upgrade_database(engine)
        assert TABLES <= await _tables(database_url)
        await downgrade_database(engine, "base")
        assert await _tables(database_url) == {"alembic_version"}
        await upgrade_database(engine)
        assert TABLES <= await _tables(database_url)
    finally:
        await engine.dispose()


async def test_feedback_migration_downgrades_cleanly(database_url: str) -> None:
    """Down to 0003 and up again: on PostgreSQL the vote enum type goes with its table."""
    engine = create_async_engine(database_url)
    try:
        await upgrade_database(engine)
        await downgrade_database(engine, "0003")
        assert await _tables(database_url) == TABLES - {"feedback"}
        if engine.dialect.name == "postgresql":
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT count(*) FROM pg_type WHERE typname = 'feedback_vote'"))).scalar() == 0
        await upgrade_database(engine)
        assert TABLES <= await _tables(database_url)
    finally:
        await engine.dispose()


async def test_migrations_build_the_tables_the_models_describe(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bot.schema import Base

    engine = create_async_engine(database_url)
    try:
        await upgrade_database(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
        assert diff == []
    finally:
        await engine.dispose()


async def test_db_command_on_any_url(database_url: str, tmp_path: Path) -> None:
    """`vlmbot db upgrade` (what an operator runs before starting replicas) honours VLMBOT_DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLMBOT_")}
    env.update(VLMBOT_DATABASE_URL=database_url, VLMBOT_DATA_DIR=str(tmp_path / "data"))
    for args in (["db", "upgrade"], ["db", "downgrade", "base"], ["db", "upgrade", "head"]):
        process = await asyncio.create_subprocess_exec(
            VLMBOT, *args, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
    assert TABLES <= await _tables(database_url)


# --- the store -------------------------------------------------------------------------------


async def test_replicas_racing_into_a_new_thread_create_one_session(database_url: str) -> None:
    async with open_store(database_url) as first, open_store(database_url, migrate=False) as second:
        for thread in ("chat:1", "chat:2", "chat:3"):
            results = await asyncio.gather(
                *[(first if i % 2 else second).active_session("telegram", thread, f"user{i}") for i in range(12)]
            )
            assert len({s.id for s in results}) == 1
        sessions = await second.list_sessions(platform="telegram")
        assert len(sessions) == 3
        assert {s.thread_key for s in sessions} == {"chat:1", "chat:2", "chat:3"}


async def test_deliveries_are_claimed_once_across_replicas(database_url: str) -> None:
    async with open_store(database_url) as first, open_store(database_url, migrate=False) as second:
        claims = await asyncio.gather(*[(first, second)[i % 2].claim_delivery("slack", "Ev1") for i in range(8)])
        assert claims.count(True) == 1
        assert await first.claim_delivery("telegram", "Ev1")


async def test_picture_sources_are_kept_with_their_turn(database_url: str) -> None:
    from bot.picture_sources import PictureSource, SourceKind

    pdf = PictureSource(SourceKind.PDF, "f" * 64, "bill.pdf", ("a" * 64, "b" * 64), (3, 4), 12)
    tiles = PictureSource(SourceKind.TILES, "e" * 64, None, ("c" * 64,), (1,), 3)
    async with open_store(database_url) as store:
        session = await store.active_session("web", "t", "alice")
        turn = await store.add_turn(
            session.id, user_id="alice", text="pages 3-4", image_hashes=["a" * 64, "b" * 64, "c" * 64],
            image_sources=[pdf, tiles],
        )
        plain = await store.add_turn(session.id, user_id="alice", text="and?", image_hashes=[])
        assert turn.image_sources == (pdf, tiles)
        assert [t.image_sources for t in await store.turns(session.id)] == [(pdf, tiles), ()]
        assert (await store.get_turn(plain.id)).image_sources == ()


async def test_turn_notes_migration_downgrades_cleanly(database_url: str) -> None:
    """Down to 0007 drops the notes column (the turns stay); up again brings it back, empty."""
    engine = create_async_engine(database_url)

    async def columns() -> set[str]:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: {c["name"] for c in inspect(sync).get_columns("turns")})

    try:
        await upgrade_database(engine)
        assert "notes" in await columns()
        await downgrade_database(engine, "0007")
        assert "notes" not in await columns() and "image_sources" in await columns()
        await upgrade_database(engine)
        assert "notes" in await columns()
    finally:
        await engine.dispose()


async def test_notes_are_kept_with_their_turn(database_url: str) -> None:
    from bot.turn_notes import NoteKind, TurnNote

    refused = TurnNote(NoteKind.REFUSED, "'broken.pdf' cannot be read.")
    tiles = TurnNote(NoteKind.NOTICE, "只读取了长截图的上半部分。")
    left_out = TurnNote(NoteKind.NOTICE, "The oldest exchange was left out.")
    async with open_store(database_url) as store:
        session = await store.active_session("web", "t", "alice")
        turn = await store.add_turn(session.id, user_id="alice", text="what?", image_hashes=[], notes=[refused, tiles])
        plain = await store.add_turn(session.id, user_id="alice", text="and?", image_hashes=[])
        assert turn.notes == (refused, tiles) and plain.notes == ()
        await store.finish_turn(turn.id, status="done", answer="a", notes=[refused, tiles, left_out])
        await store.finish_turn(plain.id, status="done", answer="b")  # no notes given: none written
        assert [t.notes for t in await store.turns(session.id)] == [(refused, tiles, left_out), ()]
        await store.set_notes(plain.id, [left_out])
        await store.finish_turn(plain.id, status="done", answer="b")  # None keeps what is there
        assert (await store.get_turn(plain.id)).notes == (left_out,)


async def test_sessions_turns_and_times(database_url: str) -> None:
    async with open_store(database_url) as store:
        session = await store.active_session("console", "main", "alice")
        assert session.created_at.tzinfo is not None and session.created_at.utcoffset() == UTC.utcoffset(None)
        turn = await store.add_turn(session.id, user_id="alice", text="printer error E42", image_hashes=["a" * 64])
        await store.finish_turn(
            turn.id, status="done", answer="Replace the toner.", stats=TurnStats(latency_ms=120, output_tokens=5, model="m")
        )
        pending = await store.add_turn(session.id, user_id="alice", text="and then?", image_hashes=[])
        assert await store.mark_interrupted() == 1
        turns = await store.turns(session.id)
        assert [(t.status, t.image_hashes) for t in turns] == [("done", ("a" * 64,)), ("interrupted", ())]
        assert turns[0].answer == "Replace the toner." and turns[0].latency_ms == 120
        assert (await store.get_turn(pending.id)).finished_at is not None
        await store.drop_from_context(turn.id)
        assert [t.id for t in await store.turns(session.id, in_context_only=True)] == [pending.id]
        assert [s.id for s in await store.list_sessions(search="e42")] == [session.id]
        await store.rename_session(session.id, "Toner")
        await store.archive_session(session.id)
        fresh = await store.active_session("console", "main")
        assert fresh.id != session.id and (await store.get_session(session.id)).status == "archived"
        await store.record_image("b" * 64, mime_type="image/png", width=2, height=2, size_bytes=10)
        await store.record_image("b" * 64, mime_type="image/png", width=2, height=2, size_bytes=10)


async def test_votes_are_one_row_per_user_and_turn_across_replicas(database_url: str) -> None:
    async with open_store(database_url) as first, open_store(database_url, migrate=False) as second:
        session = await first.active_session("telegram", "chat:1")
        turn = await first.add_turn(session.id, user_id="7", text="What is E42?", image_hashes=["a" * 64])
        await first.finish_turn(turn.id, status="done", answer="A paper jam.")
        since = turn.created_at - timedelta(seconds=1)
        # A double click reaching two replicas at once: one vote recorded, the rest unchanged.
        outcomes = await asyncio.gather(
            *[(first, second)[i % 2].vote(turn.id, platform="telegram", user_id="7", vote=Vote.UP) for i in range(8)]
        )
        assert sorted(outcomes) == sorted([VoteOutcome.RECORDED] + [VoteOutcome.UNCHANGED] * 7)
        assert await second.vote(turn.id, platform="telegram", user_id="7", vote=Vote.DOWN) is VoteOutcome.CHANGED
        assert await first.vote(turn.id, platform="telegram", user_id="7", vote=Vote.DOWN) is VoteOutcome.UNCHANGED
        assert await first.vote(turn.id, platform="telegram", user_id="8", vote=Vote.UP) is VoteOutcome.RECORDED

        votes = (await second.votes_in_session(session.id))[turn.id]
        assert [(v.user_id, v.vote, v.platform) for v in votes] == [("7", Vote.DOWN, "telegram"), ("8", Vote.UP, "telegram")]
        assert all(v.voted_at.utcoffset() == UTC.utcoffset(None) and v.created_at <= v.voted_at for v in votes)
        assert await first.vote_counts(since) == {("telegram", Vote.DOWN): 1, ("telegram", Vote.UP): 1}
        downs = await first.votes_since(since, vote=Vote.DOWN)
        assert [(v.user_id, t.id, t.answer) for v, t in downs] == [("7", turn.id, "A paper jam.")]
        assert await first.vote_counts(votes[-1].voted_at + timedelta(seconds=1)) == {}


async def test_the_database_refuses_a_vote_that_is_not_up_or_down(database_url: str) -> None:
    async with open_store(database_url) as store:
        session = await store.active_session("console", "main")
        turn = await store.add_turn(session.id, user_id="u", text="q", image_hashes=[])
        async with store.engine.begin() as conn:
            with pytest.raises(DBAPIError):
                await conn.execute(
                    text(
                        "INSERT INTO feedback (turn_id, platform, user_id, vote, created_at, voted_at) "
                        "VALUES (:turn, 'console', 'u', 'sideways', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {"turn": turn.id},
                )


# --- two bot replicas on one database --------------------------------------------------------


async def test_two_bot_replicas_share_one_thread(database_url: str, service_factory) -> None:
    """Pictures sent to two replicas at once land in one session; either replica answers the follow-up."""
    async with (
        service_factory(database_url=database_url) as one,
        service_factory(database_url=database_url) as two,  # and the same data dir: pictures are shared
    ):

        async def send(service, text: str, color: tuple[int, int, int] | None = None) -> list:
            attachments = () if color is None else (Attachment(picture_bytes(color=color), "p.png", "image/png"),)
            message = IncomingMessage("slack", "T1:C1:1700000000.1", "U1", text, attachments, "Ann")
            return [reply async for reply in service.conversations.handle(message)]

        replies = await asyncio.gather(send(one, "", (200, 0, 0)), send(two, "", (0, 0, 200)))
        assert all(isinstance(r[-1], Text) and "what would you like to know" in r[-1].text for r in replies)
        sessions = await one.store.list_sessions(platform="slack")
        assert len(sessions) == 1
        turns = await two.store.turns(sessions[0].id)
        assert [t.status for t in turns] == ["attached", "attached"]
        answer = await send(two, "What colours are these?")
        assert type(answer[-1]).__name__ == "Answer"
        assert len(await one.store.turns(sessions[0].id)) == 3
