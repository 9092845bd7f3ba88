"""The Telegram transport: one reply in a chat (or forum topic), written through the `Outbox`.

In a private chat the answer grows as a draft (`sendMessageDraft`, one draft id per reply) and is
then sent once with `sendMessage`; elsewhere, and in a chat that refused drafts, it grows by editing
a message (`editMessageText`). Either way at most one update per `interval` seconds per reply
(Telegram allows about one message a second in a private chat and 20 a minute in a group). The first
message of a reply quotes the question it answers (in groups; `Target.reply_to`). The last message
of every final answer carries the thumbs up / down keyboard (`feedback.vote_keyboard`).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable
from typing import TypeVar

from telegram import InlineKeyboardMarkup
from telegram.constants import MessageLimit
from telegram.error import Forbidden, TelegramError

from bot.transport import (
    AnswerDone,
    Capabilities,
    MessageRef,
    OutgoingFile,
    StreamRef,
    TextKind,
    TransportError,
)

from .drafts import Drafts
from .feedback import vote_keyboard
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


def _keyboard(answer: AnswerDone | None) -> InlineKeyboardMarkup | None:
    return vote_keyboard(answer.turn_id) if answer is not None else None


class TelegramTransport:
    def __init__(
        self,
        outbox: Outbox,
        target: Target,
        *,
        interval: float,
        typing_every_s: float,
        drafts: Drafts | None = None,
        draft_id: int = 0,
    ) -> None:
        """`drafts` and a non-zero `draft_id` (unique in the chat) for a reply in a private chat."""
        self.capabilities = Capabilities(max_text=MessageLimit.MAX_TEXT_LENGTH, min_interval_s=interval)
        self.edits = self
        self.streams = self if drafts is not None and draft_id and drafts.available(target.chat_id) else None
        self.status_line = None
        self.typing = self
        self.typing_every_s = typing_every_s
        self._outbox = outbox
        self._target = target
        self._drafts = drafts
        self._draft_id = draft_id
        self._quoted = False
        self._shown: dict[MessageRef, tuple[str, InlineKeyboardMarkup | None]] = {}  # message -> HTML, keyboard
        self._stream_ids = itertools.count(1)
        self._streams: dict[StreamRef, MessageRef | None] = {}  # open stream -> its message once drafts failed

    def _chunk(self, text: str, kind: TextKind) -> Chunk:
        return notice(text) if kind is TextKind.NOTICE else chunk(text)

    async def post(self, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        content, keyboard = self._chunk(text, kind), _keyboard(answer)
        quote = not self._quoted and kind is not TextKind.NOTICE
        message, _ = await _guarded(self._outbox.send(self._target, content, quote=quote, keyboard=keyboard))
        self._quoted = self._quoted or quote
        ref = str(message.message_id)
        self._shown[ref] = (content.html, keyboard)
        return ref

    async def edit(self, message: MessageRef, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        content, keyboard = self._chunk(text, kind), _keyboard(answer)
        if self._shown.get(message) == (content.html, keyboard):
            return message
        try:
            await _guarded(self._outbox.edit(self._target, int(message), content, keyboard=keyboard))
        except MessageGone:  # a user deleted it: the text goes into a new message
            return await self.post(text, kind, answer=answer)
        self._shown[message] = (content.html, keyboard)
        return message

    async def delete(self, message: MessageRef) -> None:
        self._shown.pop(message, None)
        await _guarded(self._outbox.delete(self._target, int(message)))

    # --- drafts (private chats) ---------------------------------------------------------------------

    async def start_stream(self) -> StreamRef | None:
        if self._drafts is None or not self._drafts.available(self._target.chat_id):
            return None
        stream = f"draft:{self._draft_id}:{next(self._stream_ids)}"
        self._streams[stream] = None
        return stream

    async def update_stream(self, stream: StreamRef, text: str) -> None:
        message = self._streams[stream]
        if message is None:
            assert self._drafts is not None
            if await _guarded(self._drafts.show(self._target, self._draft_id, chunk(text))):
                return
            # Refused just now: this answer goes on in a message of its own, grown by edits.
            self._streams[stream] = await self.post(text, TextKind.ANSWER)
        else:
            self._streams[stream] = await self.edit(message, text, TextKind.ANSWER)

    async def finish_stream(self, stream: StreamRef, text: str, *, answer: AnswerDone | None = None) -> MessageRef:
        """The final text is sent once (`sendMessage` ends the visible draft)."""
        message = self._streams.pop(stream)
        if message is not None:
            return await self.edit(message, text, TextKind.ANSWER, answer=answer)
        return await self.post(text, TextKind.ANSWER, answer=answer)

    # --- files and typing ---------------------------------------------------------------------------

    async def post_file(self, file: OutgoingFile) -> None:
        await _guarded(self._outbox.send_file(self._target, file.filename, file.data, file.caption, photo=file.picture))

    async def show_typing(self) -> None:
        await self._outbox.typing(self._target)
