"""The store on SQLite: one active session per thread, turns, deliveries."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.store import open_store


async def test_racing_messages_create_one_session(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    async with open_store(url) as first, open_store(url, migrate=False) as second:
        results = await asyncio.gather(
            *[(first if i % 2 else second).active_session("telegram", "chat:1") for i in range(10)]
        )
        assert len({s.id for s in results}) == 1
        assert len(await first.list_sessions(platform="telegram")) == 1


async def test_archive_makes_room_for_a_new_session(tmp_path: Path) -> None:
    async with open_store(f"sqlite+aiosqlite:///{tmp_path / 's.db'}") as store:
        old = await store.active_session("console", "main")
        await store.archive_session(old.id)
        new = await store.active_session("console", "main")
        assert new.id != old.id
        assert (await store.get_session(old.id)).status == "archived"


async def test_delivery_claimed_once(tmp_path: Path) -> None:
    async with open_store(f"sqlite+aiosqlite:///{tmp_path / 's.db'}") as store:
        assert await store.claim_delivery("telegram", "100")
        assert not await store.claim_delivery("telegram", "100")
        assert await store.claim_delivery("slack", "100")


async def test_pending_turns_become_interrupted(tmp_path: Path) -> None:
    async with open_store(f"sqlite+aiosqlite:///{tmp_path / 's.db'}") as store:
        session = await store.active_session("console", "main")
        turn = await store.add_turn(session.id, user_id="u", text="q", image_hashes=["a" * 64])
        assert await store.mark_interrupted() == 1
        again = await store.get_turn(turn.id)
        assert again.status == "interrupted" and again.image_hashes == ("a" * 64,)


async def test_search_sessions_by_turn_text(tmp_path: Path) -> None:
    async with open_store(f"sqlite+aiosqlite:///{tmp_path / 's.db'}") as store:
        a = await store.active_session("console", "a")
        b = await store.active_session("console", "b")
        await store.add_turn(a.id, user_id="u", text="printer error E42", image_hashes=[])
        await store.add_turn(b.id, user_id="u", text="invoice", image_hashes=[])
        assert [s.id for s in await store.list_sessions(search="e42")] == [a.id]


async def test_a_restarting_replica_interrupts_only_its_own_or_stale_turns(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    async with open_store(url, instance_id="bot-a") as a, open_store(url, migrate=False, instance_id="bot-b") as b:
        session = await a.active_session("slack", "C1/1")
        answering = await a.add_turn(session.id, user_id="u", text="A is answering", image_hashes=[])
        assert await b.mark_interrupted(stale_after_s=300) == 0  # B restarts: A's live answer is left alone
        assert (await a.get_turn(answering.id)).status == "pending"
        own = await b.add_turn(session.id, user_id="u", text="B was answering", image_hashes=[])
        assert await b.mark_interrupted(stale_after_s=300) == 1
        assert (await b.get_turn(own.id)).status == "interrupted"
        # A turn pending longer than any request may take lost its replica, whichever it was.
        assert await b.mark_interrupted(stale_after_s=0) == 1
        assert (await a.get_turn(answering.id)).status == "interrupted"


async def test_old_deliveries_are_pruned_recent_ones_kept(tmp_path: Path) -> None:
    async with open_store(f"sqlite+aiosqlite:///{tmp_path / 's.db'}") as store:
        assert await store.claim_delivery("slack", "C1/1.0")
        assert await store.prune_deliveries(older_than_s=3600) == 0
        assert not await store.claim_delivery("slack", "C1/1.0")  # still remembered
        assert await store.prune_deliveries(older_than_s=-1) == 1
        assert await store.claim_delivery("slack", "C1/1.0")


async def test_mime_types_are_the_recorded_ones_of_the_hashes_asked_for(tmp_path: Path) -> None:
    clip, picture, other, unknown = "c" * 64, "p" * 64, "o" * 64, "u" * 64
    async with open_store(f"sqlite+aiosqlite:///{tmp_path / 's.db'}") as store:
        assert await store.mime_types([]) == {}
        await store.record_image(clip, mime_type="video/quicktime", width=96, height=64, size_bytes=10)
        await store.record_image(picture, mime_type="image/png", width=96, height=64, size_bytes=10)
        await store.record_image(other, mime_type="video/webm", width=96, height=64, size_bytes=10)
        await store.record_image(clip, mime_type="image/png", width=1, height=1, size_bytes=1)  # the first record stays
        assert await store.mime_types({clip, picture, unknown}) == {clip: "video/quicktime", picture: "image/png"}
