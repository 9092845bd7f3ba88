"""The Telegram transport's call wrapper: waits out flood control (RetryAfter) per chat, retries a few
network failures, resends HTML the API rejects as plain text."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from telegram import (
    Bot,
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
)
from telegram.constants import ChatAction, MessageLimit, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.warnings import PTBDeprecationWarning

from .render import Chunk

__all__ = ["MessageGone", "Outbox", "Target", "retry_seconds"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


@dataclass(frozen=True)
class Target:
    """Where replies go: the chat, its forum topic, and the user's message they answer."""

    chat_id: int
    topic_id: int | None = None
    reply_to: int | None = None


class MessageGone(Exception):
    """The message to edit no longer exists (deleted by a user)."""


def retry_seconds(err: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int form of retry_after is deprecated
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = err.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def _parse_error(err: BadRequest) -> bool:
    return "can't parse entities" in str(err).lower()


class Outbox:
    """One per adapter; remembers per chat until when flood control forbids sending."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self._blocked_until: dict[int, float] = {}

    async def wait_flood(self, chat_id: int) -> None:
        delay = self._blocked_until.get(chat_id, 0.0) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def note_flood(self, chat_id: int, err: RetryAfter) -> float:
        seconds = retry_seconds(err)
        self._blocked_until[chat_id] = time.monotonic() + seconds
        log.warning("telegram flood control in chat %s: retry after %.0f s", chat_id, seconds)
        return seconds

    async def call(self, chat_id: int, action: Callable[[], Awaitable[T]]) -> T:
        """Run `action`; on RetryAfter wait as told and run it again; retry a few network failures."""
        network_failures = 0
        while True:
            await self.wait_flood(chat_id)
            try:
                return await action()
            except RetryAfter as err:
                self.note_flood(chat_id, err)
            except (TimedOut, NetworkError) as err:
                if isinstance(err, BadRequest) or network_failures >= 3:
                    raise
                network_failures += 1
                log.warning("telegram send failed in chat %s (%s); retrying", chat_id, err)
                await asyncio.sleep(0.5 * network_failures)

    async def send(
        self, target: Target, chunk: Chunk, *, quote: bool = True, keyboard: InlineKeyboardMarkup | None = None
    ) -> tuple[Message, bool]:
        """Send one chunk (with an inline keyboard under it); returns the message and whether it went out as HTML."""

        async def attempt(html: bool) -> Message:
            return await self.bot.send_message(
                target.chat_id,
                chunk.html if html else chunk.plain,
                parse_mode=ParseMode.HTML if html else None,
                message_thread_id=target.topic_id,
                reply_parameters=ReplyParameters(target.reply_to, allow_sending_without_reply=True)
                if quote and target.reply_to
                else None,
                link_preview_options=_NO_PREVIEW,
                reply_markup=keyboard,
            )

        try:
            return await self.call(target.chat_id, lambda: attempt(True)), True
        except BadRequest as err:
            if not _parse_error(err):
                raise
            log.warning("telegram rejected HTML in chat %s (%s); sending plain text", target.chat_id, err)
            return await self.call(target.chat_id, lambda: attempt(False)), False

    async def edit(
        self, target: Target, message_id: int, chunk: Chunk, *, keyboard: InlineKeyboardMarkup | None = None
    ) -> bool:
        """Replace a message's text with `chunk` and its inline keyboard with `keyboard` (None removes it);
        returns whether it is shown as HTML."""

        async def attempt(html: bool) -> None:
            await self.bot.edit_message_text(
                chunk.html if html else chunk.plain,
                chat_id=target.chat_id,
                message_id=message_id,
                parse_mode=ParseMode.HTML if html else None,
                link_preview_options=_NO_PREVIEW,
                reply_markup=keyboard,
            )

        for html in (True, False):
            try:
                await self.call(target.chat_id, functools.partial(attempt, html))
                return html
            except BadRequest as err:
                text = str(err).lower()
                if "not modified" in text:
                    return html
                if "message to edit not found" in text:
                    raise MessageGone from err
                if not (html and _parse_error(err)):
                    raise
                log.warning("telegram rejected HTML edit in chat %s (%s); using plain text", target.chat_id, err)
        raise AssertionError("unreachable")

    async def draft(self, target: Target, draft_id: int, chunk: Chunk) -> None:
        """Show `chunk` as the chat's growing draft `draft_id` (sendMessageDraft: private chats only)."""

        async def attempt(html: bool) -> None:
            await self.bot.send_message_draft(
                target.chat_id,
                draft_id,
                chunk.html if html else chunk.plain,
                message_thread_id=target.topic_id,
                parse_mode=ParseMode.HTML if html else None,
            )

        try:
            await self.call(target.chat_id, lambda: attempt(True))
        except BadRequest as err:
            if not _parse_error(err):
                raise
            await self.call(target.chat_id, lambda: attempt(False))

    async def delete(self, target: Target, message_id: int) -> None:
        try:
            await self.call(target.chat_id, lambda: self.bot.delete_message(target.chat_id, message_id))
        except BadRequest as err:
            log.info("telegram could not delete message %s in chat %s: %s", message_id, target.chat_id, err)

    async def send_file(self, target: Target, filename: str, data: bytes, caption: str | None, *, photo: bool) -> None:
        caption = caption[: MessageLimit.CAPTION_LENGTH] if caption else None

        async def attempt() -> Message:
            sender = self.bot.send_photo if photo else self.bot.send_document
            return await sender(  # type: ignore[operator]
                target.chat_id,
                InputFile(data, filename=filename),
                caption=caption,
                message_thread_id=target.topic_id,
                reply_parameters=ReplyParameters(target.reply_to, allow_sending_without_reply=True)
                if target.reply_to
                else None,
            )

        try:
            await self.call(target.chat_id, attempt)
        except BadRequest as err:
            if not photo:
                raise
            # Telegram refuses photos with extreme sides (a long scrolling screenshot): a document keeps it.
            log.info("telegram refused %s as a photo in chat %s (%s); sending it as a file", filename, target.chat_id, err)
            await self.send_file(target, filename, data, caption, photo=False)

    async def typing(self, target: Target) -> None:
        """Best effort: a failed chat action is not worth waiting or failing for."""
        try:
            await self.bot.send_chat_action(target.chat_id, ChatAction.TYPING, message_thread_id=target.topic_id)
        except RetryAfter as err:
            self.note_flood(target.chat_id, err)
        except TelegramError as err:  # e.g. Forbidden: the user blocked the bot
            log.debug("telegram chat action failed in chat %s: %s", target.chat_id, err)
