"""The Telegram adapter: updates of python-telegram-bot's Application become deliveries for the core's
inbox, each with a transport for its reply. Ordering, access, commands and rendering are the core's."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta
from typing import Any

from telegram import Bot, BotCommand, Update
from telegram.constants import UpdateType
from telegram.ext import Application, ContextTypes, TypeHandler

from bot import logsafe
from bot.adapter import ConfigurationError
from bot.commands import COMMANDS
from bot.config import Settings
from bot.i18n import translate
from bot.inbox import Inbox
from bot.incoming import Addressing, Delivery, Sender
from bot.language import Language, choose

from .downloads import Downloader
from .drafts import Drafts
from .feedback import handle_press
from .outbox import Outbox, Target
from .transport import TelegramTransport
from .updates import Inbound, Press, parse_callback, parse_update, update_from_json
from .webhook import WebhookServer

__all__ = ["TelegramAdapter"]

log = logging.getLogger(__name__)

PLATFORM = "telegram"
# Telegram delivers only the update types asked for: without callback_query no vote button press arrives.
ALLOWED_UPDATES = [UpdateType.MESSAGE.value, UpdateType.CALLBACK_QUERY.value]


class TelegramAdapter:
    """Receives by long polling (default) or a webhook (when TELEGRAM_WEBHOOK_URL is set)."""

    name = PLATFORM

    def __init__(
        self,
        settings: Settings,
        inbox: Inbox,
        *,
        album_delay: float = 1.0,
        private_edit_interval: float = 1.0,
        group_edit_interval: float = 3.0,
        poll_timeout: float = 10.0,
        typing_every: float = 4.0,
    ) -> None:
        if not settings.telegram_token:
            raise ConfigurationError("Telegram: TELEGRAM_BOT_TOKEN is not set.")
        inbox.require_access(PLATFORM)
        self._settings = settings
        self._inbox = inbox
        self._album_delay = album_delay  # an album's photos arrive as separate updates within this
        self._private_interval = private_edit_interval
        self._group_interval = group_edit_interval
        self._poll_timeout = poll_timeout
        self._typing_every = typing_every
        self._app: Application | None = None
        self._outbox: Outbox | None = None
        self._drafts: Drafts | None = None
        self._presses: set[asyncio.Task[None]] = set()  # votes being recorded and answered
        self._webhook: WebhookServer | None = None
        self._downloader: Downloader | None = None
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
            self._drafts = Drafts(self._outbox)
            self._downloader = Downloader(app.bot)
            await self._set_commands(app.bot)
            await app.start()
            if webhook:
                await self._start_webhook(app)
            else:
                assert app.updater is not None
                await app.updater.start_polling(timeout=timedelta(seconds=self._poll_timeout), allowed_updates=ALLOWED_UPDATES)
        except BaseException:
            await self.stop()
            raise
        log.info("telegram adapter started as @%s (%s)", self._username, "webhook" if webhook else "polling")

    async def _set_commands(self, bot: Bot) -> None:
        """The command menu: the default list, and one for Chinese clients (each in the language the bot
        speaks to such a user: VLMBOT_LANGUAGE may force one for everyone)."""
        setting = self._settings.language
        for code, language in ((None, choose(setting, None)), ("zh", choose(setting, Language.ZH))):
            commands = [BotCommand(c.name, translate(c.description, language)) for c in COMMANDS]
            await bot.set_my_commands(commands, language_code=code)

    async def _start_webhook(self, app: Application) -> None:
        url = self._settings.telegram_webhook_url or ""
        # The secret is checked on every request; without a configured one a random one is registered.
        secret = self._settings.telegram_webhook_secret or secrets.token_urlsafe(32)
        logsafe.register(secret, "TELEGRAM_WEBHOOK_SECRET")

        async def deliver(data: dict[str, Any]) -> None:
            await app.update_queue.put(update_from_json(data, app.bot, bot_id=self._bot_id, username=self._username))

        self._webhook = WebhookServer(url, self._settings.telegram_webhook_listen, secret, deliver)
        await self._webhook.start()
        await app.bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)

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
            await app.stop()  # hands every update already received to the inbox, and awaits the votes
        await self._inbox.close(PLATFORM, self._settings.shutdown_grace_s)
        await app.shutdown()
        self._app = None

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram: error handling update %s", getattr(update, "update_id", "?"), exc_info=context.error)

    @property
    def busy(self) -> bool:
        """Updates received and not yet fully answered (albums still collecting included)."""
        app = self._app
        queued = app.update_queue.qsize() if app is not None else 0
        return bool(queued or self._presses or self._inbox.busy(PLATFORM))

    # --- updates -> deliveries -----------------------------------------------------------------
    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (press := parse_callback(update)) is not None:
            self._on_press(press, update)
            return
        inbound = parse_update(update, bot_id=self._bot_id, username=self._username)
        if inbound is None:
            return
        delivery = Delivery(
            platform=PLATFORM,
            thread_key=inbound.thread_key,
            sender=Sender(str(inbound.user_id), chat_id=str(inbound.chat_id), name=inbound.user_name, language=inbound.language),
            text=inbound.text,
            files=inbound.files,
            delivery_id=str(update.update_id),
            addressing=Addressing.DIRECT if inbound.addressed else Addressing.OVERHEARD,
            group=inbound.media_group_id,
            group_wait_s=self._album_delay,
        )
        self._inbox.submit(delivery, self._transport(inbound), self._downloader)

    def _on_press(self, press: Press, update: Update) -> None:
        """A vote button: recorded and answered in a task of its own, so updates after it are not held up.
        The Application awaits its tasks on stop."""
        assert self._app is not None
        task = self._app.create_task(
            handle_press(press, self._inbox, self._app.bot, PLATFORM), update, name=f"telegram-press-{press.query_id}"
        )
        self._presses.add(task)
        task.add_done_callback(self._presses.discard)

    def _transport(self, inbound: Inbound) -> TelegramTransport:
        assert self._outbox is not None
        target = Target(inbound.chat_id, inbound.topic_id, None if inbound.private else inbound.message_id)
        if inbound.private:  # drafts exist only in private chats; a user's message id is unique in its chat
            return TelegramTransport(
                self._outbox, target, interval=self._private_interval, typing_every_s=self._typing_every,
                drafts=self._drafts, draft_id=inbound.message_id,
            )
        return TelegramTransport(self._outbox, target, interval=self._group_interval, typing_every_s=self._typing_every)
