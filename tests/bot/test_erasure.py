"""Retention and erasure, exact on SQLite and PostgreSQL with pictures on disk: /forget, `vlmbot data
erase`, `vlmbot data prune`, the daily prune, and crashes between the database and the files."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, String, delete, insert, inspect, select, update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from adapters.slack.commands import from_text
from bot.commands import help_text
from bot.erasure import DataRemoval
from bot.i18n import speaking
from bot.language import Language
from bot.messages import Answer, Attachment, IncomingMessage, Reply, Text
from bot.picture_sources import SourceKind, kept_files
from bot.schema import ImageRow, SessionRow, TurnRow
from bot.stored_files import FileCounts
from bot.wording import forget_done, forget_preview
from tests.adapters.telegram.botapi_standin import BotApiStandIn
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    GROUP,
    OTHER_USER,
    photo_sizes,
    running_adapter,
    settle,
)
from tests.conftest import picture_bytes
from tests.engine.videos import clip
from tests.pdfs import coloured_pdf, tall_screenshot

VLMBOT = str(Path(sys.executable).with_name("vlmbot"))


class Killed(Exception):
    """The process dying at that point (an exception stands in: nothing after it runs)."""

ANN, BOB = "111", "222"
SHARED = picture_bytes(color=(200, 0, 0))  # sent by both
ANN_ONLY = picture_bytes(color=(0, 200, 0))
ANN_PRIVATE = picture_bytes(color=(0, 0, 200))
ANN_ON_SLACK = picture_bytes(color=(200, 200, 0))
BOB_ONLY = picture_bytes(color=(0, 200, 200))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def say(service: Any, platform: str, thread: str, user: str, text: str, *pictures: bytes) -> list[Reply]:
    attachments = tuple(
        Attachment(data, f"p{i}.pdf", "application/pdf") if data.startswith(b"%PDF-") else Attachment(data, f"p{i}.png", "image/png")
        for i, data in enumerate(pictures)
    )
    message = IncomingMessage(platform, thread, user, text, attachments)
    return [reply async for reply in service.conversations.handle(message)]


async def helpdesk_history(service: Any) -> None:
    """Ann and Bob in a Telegram group, each in a private chat, and Ann on Slack."""
    group = "chat:-100200"
    assert isinstance((await say(service, "telegram", group, ANN, "What is this error?", SHARED))[-1], Answer)
    assert isinstance((await say(service, "telegram", group, BOB, "And how do I fix it?"))[-1], Answer)
    await say(service, "telegram", group, ANN, "", ANN_ONLY)  # a picture alone, for the next question
    assert isinstance((await say(service, "telegram", group, ANN, "Compare the two"))[-1], Answer)
    assert isinstance((await say(service, "telegram", group, BOB, "Mine looks the same", SHARED, BOB_ONLY))[-1], Answer)
    assert isinstance((await say(service, "telegram", "chat:111", ANN, "Private question", ANN_PRIVATE))[-1], Answer)
    await say(service, "telegram", "chat:111", ANN, "/name My laptop")
    assert isinstance((await say(service, "telegram", "chat:222", BOB, "Bob alone"))[-1], Answer)
    assert isinstance((await say(service, "slack", "C1/1.0", ANN, "On Slack", ANN_ON_SLACK))[-1], Answer)


@dataclass(frozen=True)
class Snapshot:
    turns: dict[tuple[str, str | None], list[str]]  # (platform, user) -> texts
    sessions: dict[str, tuple[str, str | None]]  # thread -> (platform, owner)
    image_rows: set[str]
    files: set[str]


async def snapshot(service: Any) -> Snapshot:
    engine = service.store.engine
    async with engine.connect() as db:
        rows = (await db.execute(
            select(SessionRow.platform, TurnRow.user_id, TurnRow.user_text, TurnRow.image_hashes, TurnRow.image_sources)
            .join(SessionRow, SessionRow.id == TurnRow.session_id).order_by(TurnRow.id)
        )).all()
        sessions = (await db.execute(select(SessionRow.id, SessionRow.platform, SessionRow.thread_key, SessionRow.owner_id))).all()
        image_rows = set((await db.scalars(select(ImageRow.sha256))).all())
    turns: dict[tuple[str, str | None], list[str]] = {}
    referenced: set[str] = set()
    for platform, user, text, hashes, sources in rows:
        turns.setdefault((platform, user), []).append(text)
        referenced.update(hashes)
        referenced.update(kept_files(sources))  # the PDFs pages were read from
    root = service.settings.images_dir
    files = {p.name for p in root.glob("*/*")} if root.exists() else set()
    # never an orphan: every turn's session exists (the join above drops those without) and every
    # picture (and PDF) a turn uses is stored
    async with engine.connect() as db:
        assert len(rows) == len((await db.scalars(select(TurnRow.id))).all())
    assert referenced <= image_rows and referenced <= files, (referenced - image_rows, referenced - files)
    return Snapshot(turns, {thread: (platform, owner) for _, platform, thread, owner in sessions}, image_rows, files)


async def test_forget_erases_only_the_users_own_data(database_url: str, service_factory) -> None:
    async with service_factory(database_url=database_url, max_new_tokens=4) as service:
        await helpdesk_history(service)
        exports = service.settings.exports_dir
        exports.mkdir(parents=True)
        private = await service.store.active_session("telegram", "chat:111")
        (exports / f"vlmbot-session-{private.id[:8]}.json").write_text("{}")
        before = await snapshot(service)
        assert before.sessions["chat:-100200"] == ("telegram", ANN)

        [summary] = await say(service, "telegram", "chat:111", ANN, "/forget")
        assert summary == Text(
            "/forget confirm erases everything of yours from Telegram: 4 message(s) and the answers to them in "
            "2 conversation(s), and 2 pictures (1 more stays: messages that are kept use it). "
            "Other people's messages stay. This cannot be undone."
        )
        assert await snapshot(service) == before  # only said what would go

        [done] = await say(service, "telegram", "chat:111", ANN, "/forget confirm")
        assert done == Text("Erased 4 message(s) of yours and the answers to them in 2 conversation(s), and 2 pictures.")
        after = await snapshot(service)
        assert (("telegram", ANN) not in after.turns) and after.turns[("telegram", BOB)] == before.turns[("telegram", BOB)]
        assert after.turns[("slack", ANN)] == ["On Slack"]  # another platform
        assert "chat:111" not in after.sessions  # Ann's private chat is gone, title and all
        assert after.sessions["chat:-100200"] == ("telegram", None)  # the group's stays, without Ann's id
        assert after.sessions["chat:222"] == ("telegram", BOB) and after.sessions["C1/1.0"] == ("slack", ANN)
        gone = {sha(ANN_ONLY), sha(ANN_PRIVATE)}
        assert after.image_rows == before.image_rows - gone and after.files == before.files - gone
        assert sha(SHARED) in after.files  # Bob's kept message uses it
        assert not list(exports.iterdir())

        assert await say(service, "telegram", "chat:111", ANN, "/forget") == [Text("Nothing of yours is stored from Telegram.")]
        follow_up = await say(service, "telegram", "chat:-100200", BOB, "Still there?")
        assert isinstance(follow_up[-1], Answer)  # the group's conversation goes on


async def ask_with(service: Any, thread: str, user: str, *files: Attachment, language: Language = Language.EN) -> list[Reply]:
    with speaking(language):
        message = IncomingMessage("telegram", thread, user, "What do these show?", files, language=language)
        return [reply async for reply in service.conversations.handle(message)]


async def forget(service: Any, thread: str, user: str, text: str, language: Language = Language.EN) -> str:
    with speaking(language):
        [reply] = await say(service, "telegram", thread, user, text)
    assert isinstance(reply, Text)
    return reply.text


async def mime_types(service: Any) -> dict[str, str]:
    async with service.store.engine.connect() as db:
        return dict((await db.execute(select(ImageRow.sha256, ImageRow.mime_type))).all())


async def test_forget_names_pictures_pdfs_and_recordings_apart(service_factory) -> None:
    """A kept PDF and a screen recording are not "pictures": /forget says what each file is, in English and
    in Chinese; a PDF's rendered pages count as the PDF, a long screenshot's tiles as the one picture sent."""
    ann_pdf, bob_pdf, bob_mov = coloured_pdf(2), coloured_pdf(3, size=(300, 300)), clip(1.0, container="mov")
    ann = (
        Attachment(ANN_PRIVATE, "photo.png", "image/png"),
        Attachment(ann_pdf, "manual.pdf", "application/pdf"),
        Attachment(clip(1.0), "screen.mp4", "video/mp4"),
    )
    bob = (
        Attachment(BOB_ONLY, "photo.png", "image/png"),
        Attachment(bob_pdf, "manual.pdf", "application/pdf"),
        Attachment(bob_mov, "screen.mov", "video/quicktime"),
    )
    async with service_factory(max_new_tokens=4, max_tiles=2) as service:
        assert isinstance((await ask_with(service, "chat:111", ANN, *ann))[-1], Answer)
        assert isinstance((await ask_with(service, "chat:222", BOB, *bob, language=Language.ZH))[-1], Answer)
        stored = await mime_types(service)
        assert stored[sha(ann_pdf)] == stored[sha(bob_pdf)] == "application/pdf"
        assert stored[sha(ann[2].data)] == "video/mp4" and stored[sha(bob_mov)] == "video/quicktime"
        assert sorted(stored.values()).count("image/png") == 2 + 2 + 3  # the photos and the PDFs' pages

        english = (
            "/forget confirm erases everything of yours from Telegram: 1 message(s) and the answers to them in "
            "1 conversation(s), and 1 picture, 1 PDF document and 1 recording. Other people's messages stay. "
            "This cannot be undone."
        )
        assert await forget(service, "chat:111", ANN, "/forget") == english
        chinese = (
            "/forget confirm 会删除你在Telegram的全部内容：1 个对话中的 1 条消息及对它们的回答，"
            "以及 1 张图片、1 份 PDF 文档和 1 段录屏。其他人的消息会保留。此操作无法撤销。"
        )
        assert await forget(service, "chat:222", BOB, "/forget", Language.ZH) == chinese
        assert await forget(service, "chat:111", ANN, "/forget confirm") == (
            "Erased 1 message(s) of yours and the answers to them in 1 conversation(s), and 1 picture, 1 PDF document "
            "and 1 recording."
        )
        assert await forget(service, "chat:222", BOB, "/forget confirm", Language.ZH) == (
            "已删除你在 1 个对话中的 1 条消息及对它们的回答，以及 1 张图片、1 份 PDF 文档和 1 段录屏。"
        )
        assert await mime_types(service) == {}

        # Ann sends a long screenshot (cut into 2 tiles) and a PDF Bob sends too: one picture goes, the PDF stays.
        shared = coloured_pdf(1)
        screenshot = Attachment(tall_screenshot((200, 1500)), "settings.png", "image/png")
        assert isinstance((await ask_with(service, "chat:-100200", ANN, screenshot, Attachment(shared, "a.pdf", None)))[-1], Answer)
        assert isinstance((await ask_with(service, "chat:-100200", BOB, Attachment(shared, "b.pdf", None)))[-1], Answer)
        assert len(await mime_types(service)) == 2 + 1 + 1  # the tiles, the PDF and its page
        assert await forget(service, "chat:-100200", ANN, "/forget") == (
            "/forget confirm erases everything of yours from Telegram: 1 message(s) and the answers to them in "
            "1 conversation(s), and 1 picture (1 more stays: messages that are kept use it). Other people's messages "
            "stay. This cannot be undone."
        )
        assert await forget(service, "chat:-100200", ANN, "/forget", Language.ZH) == (
            "/forget confirm 会删除你在Telegram的全部内容：1 个对话中的 1 条消息及对它们的回答，以及 1 张图片"
            "（另有 1 个文件会保留：仍保留的消息还要用到）。其他人的消息会保留。此操作无法撤销。"
        )
        assert await forget(service, "chat:-100200", ANN, "/forget confirm") == (
            "Erased 1 message(s) of yours and the answers to them in 1 conversation(s), and 1 picture."
        )
        assert sorted(set((await mime_types(service)).values())) == ["application/pdf", "image/png"]


async def test_forget_counts_a_pdf_sent_before_pdfs_were_kept_by_its_pages(service_factory) -> None:
    """Turns from before PDFs were kept list a PDF's pages and no row of the PDF: the pages are still one PDF."""
    pdf = coloured_pdf(2)
    async with service_factory(max_new_tokens=4) as service:
        assert isinstance((await ask_with(service, "chat:111", ANN, Attachment(pdf, "old.pdf", "application/pdf")))[-1], Answer)
        async with service.store.engine.begin() as db:
            await db.execute(delete(ImageRow).where(ImageRow.sha256 == sha(pdf)))
        assert len(await mime_types(service)) == 2  # its pages
        assert await forget(service, "chat:111", ANN, "/forget confirm") == (
            "Erased 1 message(s) of yours and the answers to them in 1 conversation(s), and 1 PDF document."
        )
        assert await mime_types(service) == {}


def test_forget_wording_leaves_out_kinds_there_are_none_of() -> None:
    """No file goes: the sentence names none, and says the files that stay as theirs; votes, plurals and the
    PDF-only case in both languages."""
    kept_only = forget_preview("Slack", 2, 1, FileCounts(), 3, 0)
    assert kept_only == (
        "/forget confirm erases everything of yours from Slack: 2 message(s) and the answers to them in 1 conversation(s) "
        "(3 files in them stay: messages that are kept use them). Other people's messages stay. This cannot be undone."
    )
    assert forget_preview("Slack", 1, 1, FileCounts(pdfs=2), 1, 4).startswith(
        "/forget confirm erases everything of yours from Slack: 1 message(s) and the answers to them in 1 conversation(s), "
        "2 PDF documents (1 more stays: messages that are kept use it), and your 4 vote(s) on answers."
    )
    assert forget_done(1, 1, FileCounts(pictures=3, videos=2), 0) == (
        "Erased 1 message(s) of yours and the answers to them in 1 conversation(s), and 3 pictures and 2 recordings."
    )
    assert forget_done(1, 1, FileCounts(), 2) == (
        "Erased 1 message(s) of yours and the answers to them in 1 conversation(s), and 2 vote(s) of yours on answers."
    )
    with speaking(Language.ZH):
        assert forget_preview("Slack", 2, 1, FileCounts(), 1, 0) == (
            "/forget confirm 会删除你在Slack的全部内容：1 个对话中的 2 条消息及对它们的回答（其中的 1 个文件会保留：仍保留的消息还要用到）。"
            "其他人的消息会保留。此操作无法撤销。"
        )
        assert forget_done(1, 1, FileCounts(pdfs=1, videos=2), 0) == (
            "已删除你在 1 个对话中的 1 条消息及对它们的回答，以及 1 份 PDF 文档和 2 段录屏。"
        )


async def test_forget_stops_an_answer_to_an_erased_question(service_factory) -> None:
    from tests.engine.test_local_engine import slow_hook

    async with service_factory(max_new_tokens=400) as service:
        service.engine.generate_hook = slow_hook(service.engine, delay=0.05)
        answering = asyncio.create_task(say(service, "web", "ann/thread-1", "ann", "A long question"))
        while not service.engine.health().running:
            await asyncio.sleep(0.02)
        [done] = await say(service, "web", "ann/thread-2", "ann", "/forget confirm")
        assert done.text.startswith("Erased 1 message(s)")
        replies = await asyncio.wait_for(answering, 10)
        assert not any(isinstance(r, Answer) for r in replies)
        assert await service.store.list_sessions(platform="web") == []


async def test_operator_erase_prints_what_it_removed(database_url: str, service_factory, tmp_path: Path) -> None:
    async with service_factory(database_url=database_url, max_new_tokens=4) as service:
        await helpdesk_history(service)
        before = await snapshot(service)
    result = run_vlmbot(tmp_path, database_url, "data", "erase", "--platform", "telegram", "--user", BOB)
    assert result.stdout.strip() == (
        "erased telegram user 222: 3 turn(s) in 2 conversation(s) (1 deleted), 1 picture(s) "
        f"({len(BOB_ONLY)} bytes; 1 kept, still in use), 0 export file(s), 0 stray picture file(s), 0 vote(s) on other answers"
    )
    async with service_factory(database_url=database_url) as service:
        after = await snapshot(service)
    assert ("telegram", BOB) not in after.turns and after.turns[("telegram", ANN)] == before.turns[("telegram", ANN)]
    assert after.files == before.files - {sha(BOB_ONLY)}


def run_vlmbot(tmp_path: Path, database_url: str, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLMBOT_", "TELEGRAM_", "SLACK_"))}
    env.update(VLMBOT_DATA_DIR=str(tmp_path / "data"), VLMBOT_DATABASE_URL=database_url, **env_extra)
    result = subprocess.run([VLMBOT, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


async def age(service: Any, thread: str, days: float) -> None:
    """Make a thread's session, turns and pictures `days` old, as if written then."""
    when = datetime.now(UTC) - timedelta(days=days)
    session = await service.store.active_session(*thread.split(" ", 1))
    turns = await service.store.turns(session.id)
    async with service.store.engine.begin() as db:
        await db.execute(update(SessionRow).where(SessionRow.id == session.id).values(created_at=when, updated_at=when))
        await db.execute(update(TurnRow).where(TurnRow.session_id == session.id).values(created_at=when))
        hashes = [h for turn in turns for h in turn.image_hashes]
        hashes += [s.sha256 for turn in turns for s in turn.image_sources if s.kind is SourceKind.PDF]
        await db.execute(update(ImageRow).where(ImageRow.sha256.in_(hashes)).values(created_at=when))
    for h in hashes:
        path = service.conversations.pictures.path(h)
        os.utime(path, (when.timestamp(), when.timestamp()))


async def test_prune_deletes_what_is_older_than_the_retention(database_url: str, service_factory, tmp_path: Path) -> None:
    async with service_factory(database_url=database_url, max_new_tokens=4) as service:
        await helpdesk_history(service)
        await age(service, "telegram chat:111", 3)  # Ann's private chat: old
        await age(service, "telegram chat:-100200", 3)  # the group: old, but Bob uses SHARED again... in it
        await age(service, "slack C1/1.0", 1)  # recent enough
        exports = service.settings.exports_dir
        exports.mkdir(parents=True)
        (exports / "old.json").write_text("{}")
        (exports / "new.json").write_text("{}")
        old = time.time() - 3 * 86400
        os.utime(exports / "old.json", (old, old))
        before = await snapshot(service)
    result = run_vlmbot(tmp_path, database_url, "data", "prune", VLMBOT_RETENTION_DAYS="2")
    assert "older than 2 day(s)" in result.stdout and "6 turn(s) in 2 conversation(s) (2 deleted)" in result.stdout
    async with service_factory(database_url=database_url) as service:
        after = await snapshot(service)
    assert set(after.turns) == {("telegram", BOB), ("slack", ANN)}
    assert after.turns[("telegram", BOB)] == ["Bob alone"]
    assert set(after.sessions) == {"chat:222", "C1/1.0"}
    assert after.image_rows == after.files == {sha(ANN_ON_SLACK)}
    assert before.files - after.files == {sha(SHARED), sha(ANN_ONLY), sha(ANN_PRIVATE), sha(BOB_ONLY)}
    assert [p.name for p in exports.iterdir()] == ["new.json"]


async def test_the_running_bot_prunes_daily(service_factory) -> None:
    async with service_factory(max_new_tokens=4) as service:
        await helpdesk_history(service)
        await age(service, "telegram chat:111", 3)
    async with service_factory(retention_days=2) as service:  # the prune runs at start, then daily
        deadline = time.monotonic() + 20
        while await service.store.list_sessions(platform="telegram", thread_key="chat:111"):
            assert time.monotonic() < deadline, "the running bot did not prune"
            await asyncio.sleep(0.1)
        after = await snapshot(service)
        assert sha(ANN_PRIVATE) not in after.files and ("telegram", BOB) in after.turns


async def test_a_crash_between_rows_and_files_leaves_no_orphan(database_url: str, service_factory, monkeypatch) -> None:
    async with service_factory(database_url=database_url, max_new_tokens=4) as service:
        await helpdesk_history(service)
        before = await snapshot(service)

        def crash(*_: Any) -> int:
            raise Killed("after the commit, before any file was removed")

        monkeypatch.setattr(DataRemoval, "_remove_files", crash)
        with pytest.raises(Killed):
            await say(service, "telegram", "chat:111", ANN, "/forget confirm")
        monkeypatch.undo()
        crashed = await snapshot(service)  # consistent: no turn refers to a picture that is gone
        assert ("telegram", ANN) not in crashed.turns
        dangling = crashed.files - crashed.image_rows
        assert dangling == {sha(ANN_ONLY), sha(ANN_PRIVATE)}
        removal = service.conversations.removal
        assert (await removal.prune(0)).stray_files == 0  # a day's grace: fresh files may await their turn
        swept = await removal.prune(0, grace_s=0)
        assert swept.stray_files == 2 and swept.turns == 0
        after = await snapshot(service)
        assert after.files == after.image_rows == before.image_rows - dangling


async def test_a_crash_before_the_commit_changes_nothing(database_url: str, service_factory, monkeypatch) -> None:
    async with service_factory(database_url=database_url, max_new_tokens=4) as service:
        await helpdesk_history(service)
        before = await snapshot(service)
        real = DataRemoval._delete_rows

        async def crash(self: DataRemoval, db: Any, *args: Any) -> Any:
            await real(self, db, *args)  # every row deleted in the transaction...
            raise Killed("before the commit")

        monkeypatch.setattr(DataRemoval, "_delete_rows", crash)
        with pytest.raises(Killed):
            await service.conversations.removal.erase_user("telegram", ANN)
        assert await snapshot(service) == before


async def test_migration_indexes_the_turns_for_erasure(database_url: str, service_factory) -> None:
    async with service_factory(database_url=database_url):
        pass
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as db:
            names = await db.run_sync(lambda sync: {i["name"] for i in inspect(sync).get_indexes("turns")})
    finally:
        await engine.dispose()
    assert {"ix_turns_user_id", "ix_turns_created_at"} <= names


def test_the_forget_command_says_it_erases_the_files_sent() -> None:
    """/forget erases pictures, PDFs and recordings alike: its line in /help (and the command menus) says files."""
    assert "/forget [confirm] - Erase your messages, the answers and the files you sent here\n" in help_text()
    with speaking(Language.ZH):
        assert "/forget [confirm] - 删除你在这里发送的消息、文件及相应回答\n" in help_text()


async def test_forget_through_telegram_and_slack_wording(service_factory) -> None:
    assert from_text("forget confirm") == "/forget confirm" and from_text("forget") == "/forget"
    async with service_factory(max_new_tokens=4) as service, BotApiStandIn() as telegram:
        async with running_adapter(telegram, service) as (adapter, _):
            await telegram.inject(telegram.message(
                chat_id=ALLOWED_USER, user_id=ALLOWED_USER, photo=photo_sizes(telegram, ANN_PRIVATE), caption="Hi"))
            group = {"chat_id": GROUP, "user_id": OTHER_USER, "chat_type": "supergroup"}
            await telegram.inject(telegram.message(**group, text="@vlm_test_bot what is a toner?"))
            await settle(telegram, adapter)
            await telegram.inject(telegram.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, text="/forget"))
            await settle(telegram, adapter)
            await telegram.inject(telegram.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, text="/forget confirm"))
            await settle(telegram, adapter)
        texts = telegram.texts(ALLOWED_USER)
        assert texts[-2].startswith("/forget confirm erases everything of yours from Telegram: 1 message(s)")
        assert texts[-1] == "Erased 1 message(s) of yours and the answers to them in 1 conversation(s), and 1 picture."
        assert [s.thread_key for s in await service.store.list_sessions(platform="telegram")] == [f"chat:{GROUP}"]


class _VotesBase(DeclarativeBase):
    pass


class _Vote(_VotesBase):
    """Rows shaped like the feedback table's: a user's vote on a turn."""

    __tablename__ = "test_votes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(Integer)
    platform: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(128))


async def test_rows_about_turns_and_users_go_with_them(database_url: str, service_factory, monkeypatch) -> None:
    """One line each in bot.erasure adds a table: its rows on erased turns, and the user's own rows."""
    import bot.erasure

    monkeypatch.setattr(bot.erasure, "TURN_CHILDREN", ((_Vote, "turn_id"),))
    monkeypatch.setattr(bot.erasure, "USER_ROWS", ((_Vote, "platform", "user_id"),))
    async with service_factory(database_url=database_url, max_new_tokens=4) as service:
        await helpdesk_history(service)
        async with service.store.engine.begin() as db:
            await db.run_sync(_VotesBase.metadata.create_all)
        group = await service.store.active_session("telegram", "chat:-100200")
        ann_turn, bob_turn = [t.id for t in await service.store.turns(group.id) if t.answer][:2]
        async with service.store.engine.begin() as db:
            await db.execute(insert(_Vote), [
                {"turn_id": bob_turn, "platform": "telegram", "user_id": ANN},  # Ann's vote on Bob's answer
                {"turn_id": ann_turn, "platform": "telegram", "user_id": BOB},  # Bob's vote on Ann's answer
                {"turn_id": bob_turn, "platform": "telegram", "user_id": BOB},
                {"turn_id": bob_turn, "platform": "slack", "user_id": ANN},  # same id, another platform
            ])
        await service.conversations.removal.erase_user("telegram", ANN)
        async with service.store.engine.connect() as db:
            left = (await db.execute(select(_Vote.turn_id, _Vote.platform, _Vote.user_id).order_by(_Vote.id))).all()
        assert [tuple(row) for row in left] == [(bob_turn, "telegram", BOB), (bob_turn, "slack", ANN)]
        await age(service, "telegram chat:-100200", 3)
        await service.conversations.removal.prune(2)
        async with service.store.engine.connect() as db:
            assert (await db.execute(select(_Vote.id))).all() == []


MANUAL = coloured_pdf(6, size=(60, 80))


async def manual_history(service: Any) -> tuple[set[str], set[str]]:
    """Ann sends a PDF in the group (pages 1-2 read), Bob asks there about its page 5, Ann sends it in
    private too; (Ann's group pages, Bob's page)."""
    group = "chat:-100200"
    assert isinstance((await say(service, "telegram", group, ANN, "Summarise", MANUAL))[-1], Answer)
    assert isinstance((await say(service, "telegram", group, BOB, "What is on page 5?"))[-1], Answer)
    assert isinstance((await say(service, "telegram", "chat:111", ANN, "", MANUAL))[-1], Text)  # kept for later
    session = await service.store.active_session("telegram", group)
    first, follow_up = await service.store.turns(session.id)
    assert [s.numbers for s in follow_up.image_sources] == [(5,)] and follow_up.image_sources[0].sha256 == sha(MANUAL)
    return set(first.image_hashes), set(follow_up.image_hashes)


async def test_a_kept_pdf_goes_with_the_last_turn_that_refers_to_it(database_url: str, service_factory) -> None:
    async with service_factory(database_url=database_url, max_new_tokens=4, max_pdf_pages=2) as service:
        ann_pages, bob_page = await manual_history(service)
        before = await snapshot(service)
        assert sha(MANUAL) in before.files and sha(MANUAL) in before.image_rows
        await say(service, "telegram", "chat:111", ANN, "/forget confirm")
        after = await snapshot(service)  # Bob's question still refers to the PDF: it stays
        assert sha(MANUAL) in after.files and sha(MANUAL) in after.image_rows
        assert not ann_pages & after.files and bob_page <= after.files
        removed = await service.conversations.removal.erase_user("telegram", BOB)
        assert removed.pictures == 2  # his page and the PDF
        after = await snapshot(service)
        assert after.files == after.image_rows == set()


async def test_a_crash_midway_leaves_the_pdf_for_the_sweep(database_url: str, service_factory, monkeypatch) -> None:
    async with service_factory(database_url=database_url, max_new_tokens=4, max_pdf_pages=2) as service:
        ann_pages, bob_page = await manual_history(service)

        def crash(*_: Any) -> int:
            raise Killed("after the commit, before any file was removed")

        monkeypatch.setattr(DataRemoval, "_remove_files", crash)
        with pytest.raises(Killed):
            await service.conversations.removal.erase_user("telegram", BOB)
        with pytest.raises(Killed):
            await service.conversations.removal.erase_user("telegram", ANN)
        monkeypatch.undo()
        crashed = await snapshot(service)  # consistent: the rows went, the files wait
        assert crashed.image_rows == set() and crashed.files == {sha(MANUAL)} | ann_pages | bob_page
        swept = await service.conversations.removal.prune(0, grace_s=0)
        assert swept.stray_files == 4 and (await snapshot(service)).files == set()


async def test_prune_deletes_an_old_pdf_with_its_pages(database_url: str, service_factory) -> None:
    async with service_factory(database_url=database_url, max_new_tokens=4, max_pdf_pages=2) as service:
        ann_pages, _bob_page = await manual_history(service)
        await age(service, "telegram chat:-100200", 3)
        removed = await service.conversations.removal.prune(2)
        after = await snapshot(service)  # Ann's private chat still has the PDF (and the same pages): they stay
        assert removed.turns == 2 and removed.pictures == 1  # Bob's page 5
        assert after.files == after.image_rows == {sha(MANUAL)} | ann_pages
        await age(service, "telegram chat:111", 3)
        await service.conversations.removal.prune(2)
        after = await snapshot(service)
        assert after.files == after.image_rows == set()
