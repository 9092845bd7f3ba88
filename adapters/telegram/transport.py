"""The Telegram transport: one reply in a chat (or forum topic), written through the `Outbox`.

Answers grow by editing a message (`editMessageText`), at most one update per `interval` seconds
per reply (Telegram allows about one message a second in a private chat and 20 a minute in a group).
The first message of a reply quotes the question it answers (in groups; `Target.reply_to`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from telegram.constants import MessageLimit
from telegram.error import Forbidden, TelegramError

from bot.transport import AnswerDone, Capabilities, MessageRef, OutgoingFile, TextKind, TransportError

from .outbox import MessageGone, Outbox, Target
from .render import Chunk, chunk, notice

__all__ = ["TelegramTransport"]

T = TypeVar("T")


async def _guarded(call: Awaitable[T]) -> T:
    try:
        return await call
    except Forbidden as err:  # blocked by the user, removed from the group: nobody to tell
        raise TransportError(str(err), gone=True) from err
    except TelegramError as err:
        raise TransportError(str(err)) from err


class TelegramTransport:
    def __init__(self, outbox: Outbox, target: Target, *, interval: float, typing_every_s: float) -> None:
        self.capabilities = Capabilities(max_text=MessageLimit.MAX_TEXT_LENGTH, min_interval_s=interval)
        self.edits = self
        self.streams = None
        self.status_line = None
        self.typing = self
        self.typing_every_s = typing_every_s
        self._outbox = outbox
        self._target = target
        self._quoted = False
        self._shown: dict[MessageRef, str] = {}  # message -> the HTML it shows

    def _chunk(self, text: str, kind: TextKind) -> Chunk:
        return notice(text) if kind is TextKind.NOTICE else chunk(text)

    async def post(self, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        content = self._chunk(text, kind)
        quote = not self._quoted and kind is not TextKind.NOTICE
        message, _ = await _guarded(self._outbox.send(self._target, content, quote=quote))
        self._quoted = self._quoted or quote
        ref = str(message.message_id)
        self._shown[ref] = content.html
        return ref

    async def edit(self, message: MessageRef, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        content = self._chunk(text, kind)
        if self._shown.get(message) == content.html:
            return message  # unchanged (and nothing is attached to a finished answer here yet)
        try:
            await _guarded(self._outbox.edit(self._target, int(message), content))
        except MessageGone:  # a user deleted it: the text goes into a new message
            return await self.post(text, kind, answer=answer)
        self._shown[message] = content.html
        return message

    async def delete(self, message: MessageRef) -> None:
        self._shown.pop(message, None)
        await _guarded(self._outbox.delete(self._target, int(message)))

    async def post_file(self, file: OutgoingFile) -> None:
        await _guarded(self._outbox.send_file(self._target, file.filename, file.data, file.caption, photo=file.picture))

    async def show_typing(self) -> None:
        await self._outbox.typing(self._target)
