"""Thumbs up / down under every final answer: the inline keyboard, and what a press of it does.

A press (`callback_query`) is answered with `answerCallbackQuery` and a one-line toast in every case:
the vote's result, or why it did not count. The callback data comes back from the client and can be
forged, so the vote goes to the core with the thread of the message pressed (`Conversations.record_vote`
refuses a turn of another thread) after the same access check as a message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import TelegramError

from bot import wording
from bot.i18n import _, speaking
from bot.incoming import Delivery, Sender
from bot.votes import Vote, decode_vote, encode_vote
from bot.wording import refusal

from .updates import Press

if TYPE_CHECKING:  # the core is not loaded for the keyboard alone
    from bot.inbox import Inbox

__all__ = ["handle_press", "vote_keyboard"]

log = logging.getLogger(__name__)

_LABELS = {Vote.UP: "👍", Vote.DOWN: "👎"}


def vote_keyboard(turn_id: int) -> InlineKeyboardMarkup:
    """The buttons under the last message of the answer of `turn_id`."""
    return InlineKeyboardMarkup([[InlineKeyboardButton(_LABELS[v], callback_data=encode_vote(turn_id, v)) for v in Vote]])


async def handle_press(press: Press, inbox: Inbox, bot: Bot, platform: str) -> None:
    """Record the vote a press carries (if it may) and answer the press; never raises for bad input."""
    with speaking(await inbox.language_of(Sender(str(press.user_id), language=press.language))):
        text = await _vote(press, inbox, platform)
    try:
        await bot.answer_callback_query(press.query_id, text=text)
    except TelegramError as err:  # e.g. answered too late: Telegram gives about 15 s
        log.info("telegram: could not answer button press %s of user %s: %s", press.query_id, press.user_id, err)


async def _vote(press: Press, inbox: Inbox, platform: str) -> str:
    decoded = decode_vote(press.data)
    if decoded is None or press.chat_id is None or press.thread_key is None:
        log.info("telegram: user %s pressed a button that is not a vote (%r)", press.user_id, press.data[:64])
        return _(wording.NOT_A_VOTE)
    sender = Sender(str(press.user_id), chat_id=str(press.chat_id), name=press.user_name, language=press.language)
    if not inbox.admits(Delivery(platform, press.thread_key, sender)):
        log.info("%s: refused a vote of user %s in chat %s", platform, press.user_id, press.chat_id)
        inbox.conversations.refused("access")
        return refusal(sender.user_id)
    turn_id, vote = decoded
    try:
        result = await inbox.conversations.record_vote(platform, press.thread_key, sender.user_id, turn_id, vote)
    except Exception:  # a storage failure costs this vote; the user is told to press again
        log.exception("%s: recording the vote of user %s on turn %s failed", platform, press.user_id, turn_id)
        return _(wording.VOTE_FAILED)
    return result.text
