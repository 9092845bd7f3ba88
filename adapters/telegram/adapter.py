"""The Telegram adapter: python-telegram-bot Application in, the bot core's reply stream out."""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import BotCommand, Update
from telegram.error import Forbidden, TelegramError
from telegram.ext import Application, ContextTypes, TypeHandler

from bot import logsafe
from bot.adapter import ConfigurationError
from bot.commands import COMMANDS
from bot.config import Settings
from bot.conversations import Conversations
from bot.messages import (
    Answer,
    AnswerDelta,
    Document,
    Generating,
    IncomingMessage,
    Notice,
    Picture,
    QueuePosition,
    Text,
)

from .access import REFUSAL, AccessPolicy
from .albums import AlbumCollector
from .downloads import Downloader
from .outbox import Outbox, Target
from .render import Chunk, code_blocks, split
from .stream import ReplyStream, Typing
from .updates import Inbound, parse_update, update_from_json
from .webhook import WebhookServer

__all__ = ["TelegramAdapter"]

log = logging.getLogger(__name__)

UNSUPPORTED = "I can read pictures and text. Send a photo or a screenshot (as a photo or an image file) and ask about it."
EMPTY = "Send a picture and ask a question about it, or /help for the commands."
FAILED = "Something went wrong while answering. Please try again."
READ_ONLY_COMMANDS = frozenset({"/status", "/help", "/start"})  # answered at once, even mid-answer
_CODE_EXT = {"html": "html", "css": "css", "javascript": "js", "js": "js", "typescript": "ts", "python": "py",
             "py": "py", "json": "json", "sql": "sql", "xml": "xml", "yaml": "yaml", "bash": "sh", "sh": "sh",
             "markdown": "md", "md": "md", "csv": "csv"}


def _queue_text(position: int) -> str:
    if position <= 1:
        return "⏳ You are next in the queue."
    ahead = position - 1
    return f"⏳ Waiting in the queue: {ahead} request{'s' if ahead > 1 else ''} ahead of you."


class TelegramAdapter:
    """Receives by long polling (default) or a webhook (when TELEGRAM_WEBHOOK_URL is set)."""

    name = "telegram"

    def __init__(
        self,
        settings: Settings,
        conversations: Conversations,
        *,
        album_delay: float = 1.0,
        private_edit_interval: float = 1.0,
        group_edit_interval: float = 3.0,
        poll_timeout: float = 10.0,
        typing_every: float = 4.0,
        long_code_chars: int = 1500,
        queue_notice_delay: float = 1.0,
    ) -> None:
        if not settings.telegram_token:
            raise ConfigurationError("Telegram: TELEGRAM_BOT_TOKEN is not set.")
        self._settings = settings
        self._conversations = conversations
        self._access = AccessPolicy.create(
            settings.telegram_allowed_users, settings.telegram_allowed_chats, settings.telegram_allow_everyone
        )
        self._albums = AlbumCollector(album_delay)
        self._private_interval = private_edit_interval
        self._group_interval = group_edit_interval
        self._poll_timeout = poll_timeout
        self._typing_every = typing_every
        self._long_code_chars = long_code_chars
        self._queue_notice_delay = queue_notice_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self._lanes: dict[str, deque[Callable[[], Awaitable[None]]]] = {}
        self._current: dict[str, asyncio.Task[None]] = {}  # the job running in each lane
        self._refused_albums: deque[str] = deque(maxlen=256)
        self._app: Application | None = None
        self._outbox: Outbox | None = None
        self._webhook: WebhookServer | None = None
        self._downloader: Downloader | None = None
        self._handling = 0
        self._bot_id = 0
        self._username = ""

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        base = self._settings.telegram_api_url.rstrip("/")
        builder = (
            Application.builder()
            .token(self._settings.telegram_token or "")
            .base_url(f"{base}/bot")
            .base_file_url(f"{base}/file/bot")
            .get_updates_read_timeout(self._poll_timeout + 10)
        )
        webhook = bool(self._settings.telegram_webhook_url)
        if webhook:
            builder = builder.updater(None)
        app = builder.build()
        app.add_handler(TypeHandler(Update, self._on_update))
        app.add_error_handler(self._on_error)
        await app.initialize()  # getMe: fails here with a clear error on a wrong token
        self._app = app
        try:
            self._bot_id, self._username = app.bot.id, app.bot.username
            self._outbox = Outbox(app.bot)
            self._downloader = Downloader(app.bot, self._conversations.check_attachment_size)
            await app.bot.set_my_commands([BotCommand(c.name, c.description) for c in COMMANDS])
            await app.start()
            if webhook:
                await self._start_webhook(app)
            else:
                assert app.updater is not None
                await app.updater.start_polling(timeout=self._poll_timeout, allowed_updates=["message"])
        except BaseException:
            await self.stop()
            raise
        log.info("telegram adapter started as @%s (%s)", self._username, "webhook" if webhook else "polling")

    async def _start_webhook(self, app: Application) -> None:
        url = self._settings.telegram_webhook_url or ""
        # The secret is checked on every request; without a configured one a random one is registered.
        secret = self._settings.telegram_webhook_secret or secrets.token_urlsafe(32)
        logsafe.register(secret, "TELEGRAM_WEBHOOK_SECRET")

        async def deliver(data: dict[str, Any]) -> None:
            await app.update_queue.put(update_from_json(data, app.bot, bot_id=self._bot_id, username=self._username))

        self._webhook = WebhookServer(url, self._settings.telegram_webhook_listen, secret, deliver)
        await self._webhook.start()
        await app.bot.set_webhook(url, secret_token=secret, allowed_updates=["message"])

    async def stop(self) -> None:
        """Stop receiving, let answers in progress finish (up to the shutdown grace), then close."""
        if self._webhook is not None:
            await self._webhook.stop()
            self._webhook = None
        app = self._app
        if app is None:
            return
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()  # handles every update already received
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=self._settings.shutdown_grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await app.shutdown()
        self._app = None

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram: error handling update %s", getattr(update, "update_id", "?"), exc_info=context.error)

    @property
    def busy(self) -> bool:
        """Updates received and not yet fully answered (albums still collecting included)."""
        app = self._app
        queued = app.update_queue.qsize() if app is not None else 0
        return bool(queued or self._handling or self._tasks)

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._handling += 1
        try:
            await self._route(update)
        finally:
            self._handling -= 1

    async def _route(self, update: Update) -> None:
        if not await self._conversations.claim_delivery("telegram", str(update.update_id)):
            log.info("telegram: update %s was already handled; ignoring the redelivery", update.update_id)
            return
        inbound = parse_update(update, bot_id=self._bot_id, username=self._username)
        if inbound is None:
            return
        if not self._access.allows(inbound.user_id, inbound.chat_id):
            if inbound.addressed and inbound.media_group_id not in self._refused_albums:
                if inbound.media_group_id:
                    self._refused_albums.append(inbound.media_group_id)
                log.info("telegram: refused user %s in chat %s", inbound.user_id, inbound.chat_id)
                self._conversations.refused("access")
                refusal = REFUSAL.format(user_id=inbound.user_id)
                self._enqueue(inbound.thread_key, lambda: self._send_text(self._target(inbound), refusal))
            return
        if inbound.media_group_id:
            if self._albums.add(inbound):
                self._enqueue(inbound.thread_key, lambda: self._album(inbound))
            return
        if not inbound.addressed:
            return
        command = inbound.text.split(" ", 1)[0].lower() if not inbound.media else ""
        if command in READ_ONLY_COMMANDS:
            self._spawn(inbound.thread_key, lambda: self._process(inbound))
            return
        if command == "/clear":
            # /clear stops the thread's running answer and drops what waits behind it, then runs.
            await self._interrupt(inbound.thread_key)
        self._enqueue(inbound.thread_key, lambda: self._process(inbound))

    def _enqueue(self, key: str, job: Callable[[], Awaitable[None]]) -> None:
        """Messages of one thread are handled in arrival order (a photo before the question about it)."""
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(job)
            return
        self._lanes[key] = deque([job])
        task = asyncio.create_task(self._drain(key), name=f"telegram-lane-{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _interrupt(self, key: str) -> None:
        lane = self._lanes.get(key)
        if lane is not None:
            lane.clear()
        current = self._current.get(key)
        if current is not None:
            # The core stops the answer (recorded as cancelled) and archives the session; the /clear
            # job queued next then finds nothing left and confirms. Cancelling the task ends the reply.
            await self._conversations.clear("telegram", key)
            current.cancel()

    async def _drain(self, key: str) -> None:
        lane = self._lanes[key]
        try:
            while lane:
                current = asyncio.create_task(self._run_job(key, lane.popleft()), name=f"telegram-job-{key}")
                self._current[key] = current
                try:
                    await current
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # the adapter is stopping, not a /clear
                    log.info("telegram: answer in %s interrupted by /clear", key)
                finally:
                    self._current.pop(key, None)
        finally:
            del self._lanes[key]

    async def _run_job(self, key: str, job: Callable[[], Awaitable[None]]) -> None:
        """One message's work; a failure is logged and reported, and the thread's next message still runs."""
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Forbidden as err:  # blocked by the user or removed from the group: nobody to tell
            log.info("telegram: cannot write in %s any more: %s", key, err)
        except Exception:
            log.exception("telegram: failed to answer in %s", key)
            chat, _, topic = key.removeprefix("chat:").partition("/topic:")
            try:
                await self._send_text(Target(int(chat), int(topic) if topic else None), FAILED)
            except TelegramError as err:
                log.warning("telegram: could not report the failure in %s: %s", key, err)

    def _spawn(self, key: str, job: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.create_task(self._run_job(key, job), name=f"telegram-now-{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _album(self, first: Inbound) -> None:
        album = await self._albums.settle(first)
        if album.addressed:
            await self._process(album)

    # --- answering -----------------------------------------------------------------------------
    def _target(self, inbound: Inbound) -> Target:
        return Target(inbound.chat_id, inbound.topic_id, None if inbound.private else inbound.message_id)

    async def _send_text(self, target: Target, markdown: str) -> None:
        assert self._outbox is not None
        for i, chunk in enumerate(split(markdown)):
            await self._outbox.send(target, chunk, quote=i == 0)

    async def _process(self, inbound: Inbound) -> None:
        target = self._target(inbound)
        if inbound.unsupported and not inbound.media:
            await self._send_text(target, UNSUPPORTED)
            return
        if not inbound.media and not inbound.text:
            await self._send_text(target, EMPTY)
            return
        assert self._downloader is not None
        downloaded = await self._downloader.fetch(inbound.media, inbound.chat_id)
        if downloaded.problem:
            await self._send_text(target, downloaded.problem)
            return
        message = IncomingMessage(
            platform="telegram",
            thread_key=inbound.thread_key,
            user_id=str(inbound.user_id),
            text=inbound.text,
            attachments=downloaded.attachments,
            user_name=inbound.user_name,
        )
        await self._reply(target, message, private=inbound.private)

    async def _reply(self, target: Target, message: IncomingMessage, *, private: bool) -> None:
        outbox = self._outbox
        assert outbox is not None
        interval = self._private_interval if private else self._group_interval
        stream = ReplyStream(outbox, target, interval)
        typing = Typing(outbox, target, self._typing_every)
        typing.start()
        replies = self._conversations.handle(message)
        try:
            async for reply in replies:
                if isinstance(reply, QueuePosition):
                    # "Next in line" usually starts at once: say so only if the wait drags on.
                    after = 0.0 if reply.position > 1 else self._queue_notice_delay
                    stream.status(_queue_text(reply.position), after)
                elif isinstance(reply, Generating):
                    continue
                elif isinstance(reply, AnswerDelta):
                    await typing.stop()
                    stream.delta(reply.text)
                elif isinstance(reply, Answer):
                    await typing.stop()
                    await stream.finish(reply.text)
                    if not reply.files_follow:
                        await self._send_long_code(target, reply)
                elif isinstance(reply, Text):
                    await typing.stop()
                    await stream.close()
                    await self._send_text(target, reply.text)
                elif isinstance(reply, Notice):
                    await outbox.send(target, Chunk(f"<i>{_escape(reply.text)}</i>", reply.text), quote=False)
                elif isinstance(reply, (Document, Picture)):
                    await typing.stop()
                    await outbox.send_file(
                        target, reply.filename, reply.data, reply.caption, photo=isinstance(reply, Picture)
                    )
        finally:
            # Each step runs even when an earlier one fails (e.g. Forbidden: the user blocked the bot).
            for step in (typing.stop, stream.close, replies.aclose):
                try:
                    await step()
                except TelegramError as err:
                    log.warning("telegram: cleanup after answering in chat %s failed: %s", target.chat_id, err)

    async def _send_long_code(self, target: Target, answer: Answer) -> None:
        """Long code (e.g. HTML for a mock-up) is also sent as a file: easier to save than to copy."""
        assert self._outbox is not None
        long_blocks = [b for b in code_blocks(answer.text) if len(b.code) >= self._long_code_chars]
        for i, block in enumerate(long_blocks, 1):
            ext = _CODE_EXT.get(block.language.lower(), "txt")
            suffix = f"-{i}" if len(long_blocks) > 1 else ""
            await self._outbox.send_file(
                target, f"answer-{answer.turn_id}{suffix}.{ext}", block.code.encode(), None, photo=False
            )


def _escape(text: str) -> str:
    return html.escape(text, quote=False)
