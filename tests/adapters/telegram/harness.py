"""Running the real TelegramAdapter (python-telegram-bot Application) against the Bot API stand-in."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from PIL import Image

from adapters.telegram import TelegramAdapter
from bot.inbox import Inbox
from bot.messages import Answer, IncomingMessage, Reply
from tests.adapters.telegram.botapi_standin import BotApiStandIn

__all__ = [
    "Scripted", "SettingsOnly",
    "ALLOWED_USER", "FORUM", "GROUP", "OTHER_USER", "STRANGER", "Recording", "exported", "photo_sizes", "png",
    "running_adapter", "settle", "shown_text",
]

ALLOWED_USER = 111
OTHER_USER = 222  # allowed through the group chat allowlist only
STRANGER = 666
GROUP = -100200
FORUM = -100300


class Recording:
    """The real Conversations, with every message and reply it handled written down."""

    def __init__(self, conversations: Any) -> None:
        self._inner = conversations
        self.handled: list[IncomingMessage] = []
        self.replies: list[tuple[IncomingMessage, Reply]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def handle(self, message: IncomingMessage) -> AsyncIterator[Reply]:
        self.handled.append(message)
        inner = self._inner.handle(message)
        try:
            async for reply in inner:
                self.replies.append((message, reply))
                yield reply
        finally:
            await inner.aclose()

    def answers(self) -> list[Answer]:
        return [r for _, r in self.replies if isinstance(r, Answer)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def running_adapter(
    standin: BotApiStandIn, service: Any, *, mode: str = "polling", conversations: Any = None, **kw: Any
) -> AsyncIterator[tuple[TelegramAdapter, Any]]:
    """Start the adapter on `service` (its settings extended with the stand-in's URL and allowlists)."""
    update: dict[str, Any] = {
        "telegram_token": standin.token,
        "telegram_api_url": standin.url,
        "telegram_allowed_users": (str(ALLOWED_USER),),
        "telegram_allowed_chats": (str(GROUP), str(FORUM)),
    }
    if mode == "webhook":
        port = free_port()
        update |= {
            "telegram_webhook_url": f"http://127.0.0.1:{port}/telegram/hook",
            "telegram_webhook_listen": f"127.0.0.1:{port}",
            "telegram_webhook_secret": "hook-secret_1",
        }
    update |= kw.pop("settings", {})
    settings = service.settings.model_copy(update=update)
    recording = conversations or Recording(service.conversations)
    options = {"album_delay": 0.4, "private_edit_interval": 0.05, "group_edit_interval": 0.1, "poll_timeout": 1.0}
    options |= kw
    adapter = TelegramAdapter(settings, Inbox(recording, settings), **options)
    await adapter.start()
    try:
        yield adapter, recording
    finally:
        await adapter.stop()


async def settle(standin: BotApiStandIn, adapter: TelegramAdapter, timeout: float = 20.0) -> None:
    """Wait until every injected update was received and fully answered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    quiet_since = None
    while True:
        idle = not standin._pending and not adapter.busy
        now = loop.time()
        if idle:
            quiet_since = quiet_since or now
            if now - quiet_since > 0.15:
                return
        else:
            quiet_since = None
        if now > deadline:
            raise AssertionError(f"adapter still busy after {timeout}s; calls: {standin.summary()}")
        await asyncio.sleep(0.02)


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (96, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def photo_sizes(standin: BotApiStandIn, data: bytes) -> list[str]:
    """A thumbnail (not a picture at all: it must never be downloaded) and the full picture."""
    return [standin.add_file(b"thumbnail-not-used", file_size=100), standin.add_file(data, ext="png")]


def exported(standin: BotApiStandIn, chat_id: int) -> dict[str, Any]:
    doc = [m for m in standin.chat_messages(chat_id) if m.kind == "document" and (m.filename or "").endswith(".json")]
    assert doc, f"no export document in chat {chat_id}: {standin.summary()}"
    return json.loads(doc[-1].data or b"{}")


def shown_text(standin: BotApiStandIn, chat_id: int) -> list[str]:
    return [m.text or "" for m in standin.chat_messages(chat_id) if m.kind == "text"]




class Scripted:
    """A stand-in for the core that answers with a given reply script (for rendering edge cases).

    Numbers in a script are pauses in seconds; an exception in a script is raised.
    """

    def __init__(self, *script: Any, pause: float = 0.0, by_text: dict[str, tuple[Any, ...]] | None = None) -> None:
        self.script = script
        self.by_text = by_text or {}
        self.pause = pause
        self.handled: list[IncomingMessage] = []
        self.cleared: list[str] = []
        self._claimed: set[str] = set()

    async def clear(self, platform: str, thread_key: str) -> str:
        self.cleared.append(thread_key)
        return "Cleared."

    def stop_thread(self, platform: str, thread_key: str) -> None:
        pass  # nothing runs in the engine here: cancelling the reply stops a script

    async def has_conversation(self, platform: str, thread_key: str) -> bool:
        return False

    async def claim_delivery(self, platform: str, delivery_id: str) -> bool:
        if delivery_id in self._claimed:
            return False
        self._claimed.add(delivery_id)
        return True

    def check_attachment_size(self, size: int | None, *, video: bool = False) -> str | None:
        return None

    def refused(self, reason: str) -> None:
        pass  # counting is the real core's

    async def handle(self, message: IncomingMessage) -> AsyncIterator[Reply]:
        self.handled.append(message)
        for reply in self.by_text.get(message.text, self.script):
            if isinstance(reply, BaseException):
                raise reply
            if isinstance(reply, (int, float)):
                await asyncio.sleep(reply)
                continue
            yield reply
            await asyncio.sleep(self.pause)


class SettingsOnly:
    """What `running_adapter` needs of a service when the core is scripted."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
