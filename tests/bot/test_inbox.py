"""The inbox: access before claims, exactly-once deliveries, /clear stopping what runs and what waits,
commands that need not wait, messages delivered in parts, follow-ups, and files - with a scripted
conversation core and a recording transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.access import AccessConfigError
from bot.config import Settings
from bot.inbox import Inbox
from bot.incoming import Addressing, Delivery, FetchFailed, IncomingFile, Sender
from bot.messages import Answer, IncomingMessage, Reply, Text
from bot.transport import TextKind
from bot.wording import FAILED, not_pictures, pdf_over_limit, refusal
from tests.bot.recording import Recording


class Core:
    """The conversation core's surface, answering each text with "answer to TEXT"; texts in `gates`
    wait for their event first."""

    def __init__(self) -> None:
        self.handled: list[IncomingMessage] = []
        self.claims: list[str] = []
        self.stopped: list[tuple[str, str]] = []
        self.cleared: list[tuple[str, str]] = []
        self.cancelled: list[str] = []
        self.conversations: set[tuple[str, str]] = set()
        self.gates: dict[str, asyncio.Event] = {}
        self.refusals: list[str] = []
        self._claimed: set[str] = set()

    async def handle(self, message: IncomingMessage) -> AsyncIterator[Reply]:
        self.handled.append(message)
        if message.text == "/clear":
            yield Text("Cleared.")
            return
        if message.text == "boom":
            raise RuntimeError("a bug in the core")
        try:
            if message.text in self.gates:
                await self.gates[message.text].wait()
        except asyncio.CancelledError:
            self.cancelled.append(message.text)
            raise
        yield Answer(f"answer to {message.text}", turn_id=len(self.handled), latency_ms=1, output_tokens=1)

    async def clear(self, platform: str, thread_key: str) -> str:
        self.cleared.append((platform, thread_key))
        return "Cleared."

    async def claim_delivery(self, platform: str, delivery_id: str) -> bool:
        self.claims.append(delivery_id)
        fresh = delivery_id not in self._claimed
        self._claimed.add(delivery_id)
        return fresh

    async def has_conversation(self, platform: str, thread_key: str) -> bool:
        return (platform, thread_key) in self.conversations

    def stop_thread(self, platform: str, thread_key: str) -> None:
        self.stopped.append((platform, thread_key))

    def check_attachment_size(self, size: int | None, *, video: bool = False) -> str | None:
        return f"{size} bytes is over the limit." if size is not None and size > 1000 else None

    def refused(self, reason: str) -> None:
        self.refusals.append(reason)


class Fetcher:
    def __init__(self, files: dict[str, bytes], *, fail: str | None = None) -> None:
        self.files = files
        self.fail = fail
        self.fetched: list[str] = []

    def check(self, file: IncomingFile) -> str | None:
        return "Over the platform's limit." if (file.size or 0) > 5000 else None

    async def fetch(self, file: IncomingFile) -> bytes:
        self.fetched.append(file.ref)
        if file.ref == self.fail:
            raise FetchFailed(f"I couldn't download {file.name}.")
        return self.files[file.ref]


def settings(tmp_path: Path, **kw: Any) -> Settings:
    values = {"data_dir": tmp_path, "queue_notice_delay_s": 0.0, "telegram_allowed_users": ("1",)} | kw
    return Settings.model_construct().model_copy(update=values)


def delivery(text: str, *, user: str = "1", thread: str = "t", **kw: Any) -> Delivery:
    return Delivery("telegram", thread, Sender(user, chat_id=kw.pop("chat", "c")), text, **kw)


@pytest.fixture
def core() -> Core:
    return Core()


@pytest.fixture
def inbox(core: Core, tmp_path: Path) -> Inbox:
    return Inbox(core, settings(tmp_path))  # type: ignore[arg-type]


async def test_messages_of_a_thread_are_answered_in_order(core: Core, inbox: Inbox) -> None:
    core.gates["first"] = asyncio.Event()
    t1, t2 = Recording(), Recording()
    first = inbox.submit(delivery("first", delivery_id="1"), t1)
    second = inbox.submit(delivery("second", delivery_id="2"), t2)
    await asyncio.sleep(0.05)
    assert [m.text for m in core.handled] == ["first"]  # the second waits for the first
    core.gates["first"].set()
    await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), 5)
    assert [m.text for m in core.handled] == ["first", "second"]
    assert t1.texts() == ["answer to first"] and t2.texts() == ["answer to second"]


async def test_other_threads_are_not_held_up(core: Core, inbox: Inbox) -> None:
    core.gates["slow"] = asyncio.Event()
    inbox.submit(delivery("slow", thread="a"), Recording())
    other = inbox.submit(delivery("quick", thread="b"), Recording())
    await asyncio.wait_for(other.wait(), 5)
    assert [m.text for m in core.handled] == ["slow", "quick"]
    core.gates["slow"].set()
    await inbox.idle()


async def test_clear_stops_what_runs_and_what_waits(core: Core, inbox: Inbox) -> None:
    core.gates["running"] = asyncio.Event()
    running = inbox.submit(delivery("running", delivery_id="1"), Recording())
    waiting = inbox.submit(delivery("waiting", delivery_id="2"), Recording())
    await asyncio.sleep(0.05)
    t = Recording()
    clear = inbox.submit(delivery("/clear", delivery_id="3"), t)
    after = inbox.submit(delivery("after", delivery_id="4"), Recording())  # sent after /clear: kept
    await asyncio.wait_for(asyncio.gather(running.wait(), waiting.wait(), clear.wait(), after.wait()), 5)
    assert running.cancelled and waiting.cancelled and not clear.cancelled and not after.cancelled
    assert core.cancelled == ["running"] and core.stopped == [("telegram", "t")]
    assert [m.text for m in core.handled] == ["running", "/clear", "after"]
    assert t.texts() == ["Cleared."]


async def test_a_redelivered_clear_stops_nothing(core: Core, inbox: Inbox) -> None:
    await inbox.submit(delivery("/clear", delivery_id="9"), Recording()).wait()
    core.gates["running"] = asyncio.Event()
    running = inbox.submit(delivery("running", delivery_id="10"), Recording())
    await asyncio.sleep(0.05)
    inbox.submit(delivery("/clear", delivery_id="9"), Recording())  # the platform sends it again
    await asyncio.sleep(0.1)
    assert not running.ended and len(core.stopped) == 1
    core.gates["running"].set()
    await asyncio.wait_for(running.wait(), 5)
    assert not running.cancelled


async def test_status_is_answered_while_the_thread_is_busy(core: Core, inbox: Inbox) -> None:
    core.gates["long question"] = asyncio.Event()
    inbox.submit(delivery("long question"), Recording())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(inbox.submit(delivery("/status"), Recording()).wait(), 5)
    assert [m.text for m in core.handled] == ["long question", "/status"]
    core.gates["long question"].set()
    await inbox.idle()


async def test_a_stranger_is_refused_once_and_nothing_is_claimed(core: Core, inbox: Inbox) -> None:
    t = Recording()
    for _ in range(3):  # the platform redelivers
        await inbox.submit(delivery("hello", user="666", delivery_id="77"), t).wait()
    await inbox.submit(delivery("chatting", user="666", addressing=Addressing.FOLLOW_UP, delivery_id="78"), t).wait()
    assert t.texts() == [refusal("666")] and "666" in t.texts()[0] and "\n" not in t.texts()[0]
    assert core.claims == [] and core.handled == []
    assert core.refusals == ["access"]  # counted once, as it was answered once


async def test_anyone_in_an_allowed_chat_is_let_in(core: Core, tmp_path: Path) -> None:
    inbox = Inbox(core, settings(tmp_path, telegram_allowed_users=(), telegram_allowed_chats=("c9",)))  # type: ignore[arg-type]
    await inbox.submit(delivery("hi", user="5", chat="c9"), Recording()).wait()
    await inbox.submit(delivery("hi", user="5", chat="c8"), Recording()).wait()
    assert len(core.handled) == 1


def test_a_platform_without_allowlists_does_not_start(core: Core, tmp_path: Path) -> None:
    inbox = Inbox(core, settings(tmp_path, telegram_allowed_users=()))  # type: ignore[arg-type]
    with pytest.raises(AccessConfigError, match="TELEGRAM_ALLOW_EVERYONE"):
        inbox.require_access("telegram")
    with pytest.raises(AccessConfigError, match="SLACK_ALLOW_EVERYONE"):
        inbox.require_access("slack")
    inbox.require_access("web")  # its own token guards it


async def test_a_redelivered_message_is_answered_once(core: Core, inbox: Inbox) -> None:
    t = Recording()
    for _ in range(2):
        await inbox.submit(delivery("hello", delivery_id="5"), t).wait()
    assert [m.text for m in core.handled] == ["hello"] and t.texts() == ["answer to hello"]


async def test_parts_of_one_message_are_one_turn(core: Core, inbox: Inbox) -> None:
    fetcher = Fetcher({f"f{i}": f"picture {i}".encode() for i in range(3)})
    t = Recording()
    for i in range(3):
        part = delivery(
            "Compare these" if i == 1 else "", delivery_id=f"u{i}", group="album", group_wait_s=0.1,
            files=(IncomingFile(f"p{i}.png", "image/png", 10, f"f{i}"),),
            addressing=Addressing.DIRECT if i == 1 else Addressing.OVERHEARD,
        )
        inbox.submit(part, t, fetcher)
        await asyncio.sleep(0.02)
    await inbox.idle()
    [message] = core.handled
    assert message.text == "Compare these" and [a.data for a in message.attachments] == [b"picture 0", b"picture 1", b"picture 2"]
    assert core.claims == ["u0", "u1", "u2"] and t.texts() == ["answer to Compare these"]


async def test_an_album_nobody_addressed_is_left_alone(core: Core, inbox: Inbox) -> None:
    fetcher = Fetcher({"f": b"x"})
    for _ in range(2):
        inbox.submit(delivery("", group="g", group_wait_s=0.05, addressing=Addressing.OVERHEARD,
                              files=(IncomingFile("p.png", "image/png", 1, "f"),)), Recording(), fetcher)
    await inbox.idle()
    assert core.handled == [] and fetcher.fetched == [] and core.claims == []


async def test_a_follow_up_is_answered_only_in_a_thread_the_bot_is_in(core: Core, inbox: Inbox) -> None:
    t = Recording()
    await inbox.submit(delivery("lunch?", thread="x", delivery_id="a", addressing=Addressing.FOLLOW_UP), t).wait()
    assert core.handled == [] and core.claims == []  # not even claimed
    core.conversations.add(("telegram", "x"))
    await inbox.submit(delivery("and then?", thread="x", delivery_id="b", addressing=Addressing.FOLLOW_UP), t).wait()
    assert [m.text for m in core.handled] == ["and then?"]


async def test_files_are_checked_before_any_download(core: Core, inbox: Inbox) -> None:
    fetcher = Fetcher({"ok": b"fine"})
    t = Recording()
    files = (IncomingFile("a.png", "image/png", 10, "ok"), IncomingFile("huge.png", "image/png", 9000, "big"))
    await inbox.submit(delivery("what?", files=files), t, fetcher).wait()
    files = (IncomingFile("a.png", "image/png", 10, "ok"), IncomingFile("b.png", "image/png", 2000, "big"))
    await inbox.submit(delivery("what?", files=files), t, fetcher).wait()
    assert fetcher.fetched == [] and core.handled == []
    assert t.texts() == ["Over the platform's limit.", "2000 bytes is over the limit."]
    assert {m.kind for m in t.messages.values()} == {TextKind.ERROR}


async def test_a_pdf_over_the_limit_is_left_out_and_the_rest_goes_on(core: Core, tmp_path: Path) -> None:
    inbox = Inbox(core, settings(tmp_path, max_image_bytes=1000))  # type: ignore[arg-type]
    fetcher = Fetcher({"ok": b"fine", "pdf": b"%PDF-" + b"x" * 3000})
    t = Recording()
    files = (IncomingFile("big.pdf", "application/pdf", 3000, "pdf"), IncomingFile("a.png", "image/png", 10, "ok"))
    await inbox.submit(delivery("what?", files=files), t, fetcher).wait()
    unknown = IncomingFile("size-unknown.pdf", "application/pdf", None, "pdf")  # found too large once fetched
    await inbox.submit(delivery("and this?", files=(unknown,)), t, fetcher).wait()
    assert fetcher.fetched == ["ok", "pdf"] and [m.text for m in core.handled] == ["what?"]
    assert [len(m.attachments) for m in core.handled] == [1]
    assert t.texts() == [
        pdf_over_limit("'big.pdf'", 3000, 1000), "answer to what?", pdf_over_limit("'size-unknown.pdf'", 3005, 1000)
    ]


async def test_a_failed_download_and_files_that_are_not_pictures_are_told(core: Core, inbox: Inbox) -> None:
    fetcher = Fetcher({"ok": b"fine"}, fail="bad")
    t = Recording()
    await inbox.submit(delivery("read it", files=(IncomingFile("r.zip", "application/zip", 10, "zip"),)), t, fetcher).wait()
    await inbox.submit(delivery("and this", files=(IncomingFile("x.png", "image/png", 10, "bad"),)), t, fetcher).wait()
    both = (IncomingFile("r.zip", "application/zip", 10, "zip"), IncomingFile("a.png", "image/png", 10, "ok"))
    await inbox.submit(delivery("this one", files=both), t, fetcher).wait()
    assert t.texts() == [not_pictures(["r.zip"]), "I couldn't download x.png.", not_pictures(["r.zip"]), "answer to this one"]
    assert [m.text for m in core.handled] == ["this one"] and core.handled[0].attachments[0].data == b"fine"


async def test_a_failing_core_is_reported_and_the_thread_goes_on(core: Core, inbox: Inbox) -> None:
    t = Recording()
    inbox.submit(delivery("boom"), t)
    await inbox.submit(delivery("next"), t).wait()
    assert t.texts() == [FAILED, "answer to next"]


async def test_the_web_clear_button_stops_the_thread_too(core: Core, inbox: Inbox) -> None:
    core.gates["running"] = asyncio.Event()
    running = inbox.submit(delivery("running"), Recording())
    await asyncio.sleep(0.05)
    assert await inbox.clear("telegram", "t") == "Cleared."
    await asyncio.wait_for(running.wait(), 5)
    assert running.cancelled and core.cleared == [("telegram", "t")]
