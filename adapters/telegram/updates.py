"""A Telegram update -> the plain facts the adapter acts on (no network, no side effects)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from telegram import Bot, Message, Update

from bot.i18n import N_
from bot.incoming import IncomingFile
from bot.language import Language, from_tag

from .webhook import MalformedUpdate

__all__ = ["Inbound", "Press", "parse_callback", "parse_update", "thread_key", "update_from_json"]

UNSUPPORTED_KINDS = ("sticker", "voice", "audio", "contact", "location", "poll")
# How "I skipped {names}" names them (translated by the inbox when it says so).
_KIND_NAMES = {
    "sticker": N_("the sticker"), "voice": N_("the voice"), "video": N_("the video"), "video_note": N_("the video note"),
    "audio": N_("the audio"), "animation": N_("the animation"), "contact": N_("the contact"),
    "location": N_("the location"), "poll": N_("the poll"), "document": N_("the document"),
}


@dataclass(frozen=True)
class Inbound:
    """One user message, addressed-ness and files resolved, nothing downloaded yet."""

    update_id: int
    chat_id: int
    chat_type: str
    topic_id: int | None
    thread_key: str
    user_id: int
    user_name: str | None
    message_id: int
    text: str
    files: tuple[IncomingFile, ...]  # pictures, and what the bot cannot read (a sticker, a PDF ...)
    addressed: bool  # private chat, or mentioned / replied to / given a command in a group
    media_group_id: str | None
    language: Language | None = None  # from the user's language_code ("zh-hans", "en"), when the app sends it

    @property
    def private(self) -> bool:
        return self.chat_type == "private"


@dataclass(frozen=True)
class Press:
    """A user pressed an inline button of one of the bot's messages."""

    update_id: int
    query_id: str
    user_id: int
    user_name: str | None
    data: str  # the button's callback data as sent back: forgeable, "" when there is none
    chat_id: int | None  # None when Telegram no longer says where the message is (too old, inline mode)
    thread_key: str | None  # derived from the message as for messages: the chat and its forum topic
    language: Language | None = None

    @property
    def private(self) -> bool:
        return self.chat_id is not None and self.chat_id > 0


def thread_key(chat_id: int, topic_id: int | None) -> str:
    return f"chat:{chat_id}/topic:{topic_id}" if topic_id is not None else f"chat:{chat_id}"


def _topic(message: Message) -> int | None:
    # message_thread_id is also set on replies in ordinary groups; only forum topics are sessions.
    if message.is_topic_message and message.message_thread_id:
        return message.message_thread_id
    return None


def _files(message: Message) -> tuple[IncomingFile, ...]:
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        return (IncomingFile("", "image/jpeg", largest.file_size, largest.file_id),)
    # Videos, GIFs (Telegram sends them as MP4 animations, also described as a document) and round
    # video notes: the core checks what they really are once fetched.
    if clip := message.video or message.animation:
        return (IncomingFile(clip.file_name or "", clip.mime_type or "video/mp4", clip.file_size, clip.file_id),)
    if note := message.video_note:
        return (IncomingFile("", "video/mp4", note.file_size, note.file_id),)
    if doc := message.document:
        return (IncomingFile(doc.file_name or _KIND_NAMES["document"], doc.mime_type, doc.file_size, doc.file_id),)
    for kind in UNSUPPORTED_KINDS:
        if getattr(message, kind, None):
            return (IncomingFile(_KIND_NAMES[kind], None, None),)
    return ()


def _strip_command(text: str, username: str) -> tuple[str, bool | None]:
    """'/clear@bot x' -> ('/clear x', True); a command for another bot -> (text, False); no command -> None."""
    if not text.startswith("/"):
        return text, None
    head, sep, rest = text.partition(" ")
    name, at, target = head.partition("@")
    if at and target.lower() != username.lower():
        return text, False
    return f"{name}{sep}{rest}", True


def parse_update(update: Update, *, bot_id: int, username: str) -> Inbound | None:
    """None for updates that carry no user message (edits, service messages, channel posts...)."""
    message = update.message
    if message is None or message.from_user is None or message.from_user.is_bot:
        return None
    chat = message.chat
    raw = message.text or message.caption or ""
    entities = message.entities if message.text else message.caption_entities
    mention = f"@{username}".lower()
    parse = message.parse_entity if message.text else message.parse_caption_entity
    mentioned = False
    for entity in entities or ():
        if (entity.type == "mention" and parse(entity).lower() == mention) or (
            entity.type == "text_mention" and entity.user and entity.user.id == bot_id
        ):
            mentioned = True
    text = re.sub(rf"(?i)(?<!\w)@{re.escape(username)}\b", "", raw).strip() if mentioned else raw
    text, command = _strip_command(text.strip(), username)
    reply = message.reply_to_message
    # In forums every message "replies" to the topic's creation message; that is not a reply to us.
    replied_to_bot = bool(
        reply and reply.forum_topic_created is None and reply.from_user and reply.from_user.id == bot_id
    )
    private = chat.type == "private"
    addressed = private or mentioned or replied_to_bot or command is True
    if command is False:  # "/cmd@otherbot"
        addressed = private
    files = _files(message)
    if not files and reply and not private and addressed and reply.forum_topic_created is None:
        # "@bot what is this?" as a reply to someone's photo asks about that photo.
        files = tuple(f for f in _files(reply) if f.is_picture)
    if message.new_chat_members or message.left_chat_member or (not raw and not files):
        return None
    user = message.from_user
    topic = _topic(message)
    return Inbound(
        update_id=update.update_id,
        chat_id=chat.id,
        chat_type=chat.type,
        topic_id=topic,
        thread_key=thread_key(chat.id, topic),
        user_id=user.id,
        user_name=user.full_name or user.username,
        message_id=message.message_id,
        text=text,
        files=files,
        addressed=addressed,
        media_group_id=message.media_group_id,
        language=from_tag(user.language_code),
    )


def parse_callback(update: Update) -> Press | None:
    """None for updates that are not a button press."""
    query = update.callback_query
    if query is None:
        return None
    message = query.message
    chat_id: int | None = None
    key: str | None = None
    # An InaccessibleMessage (too old, deleted) has no topic to tell the thread by.
    if isinstance(message, Message) and message.is_accessible:
        chat_id = message.chat.id
        key = thread_key(chat_id, _topic(message))
    user = query.from_user
    return Press(
        update_id=update.update_id,
        query_id=query.id,
        user_id=user.id,
        user_name=user.full_name or user.username,
        data=query.data or "",
        chat_id=chat_id,
        thread_key=key,
        language=from_tag(user.language_code),
    )


def update_from_json(data: dict[str, Any], bot: Bot, *, bot_id: int, username: str) -> Update:
    """A webhook's JSON object -> the Update, or MalformedUpdate (answered with 400, not a 500).

    PTB does not check field types (`"chat": null` and `"text": true` pass), so the update must also
    go through `parse_update` here, rather than fail after it was acknowledged."""
    try:
        update = Update.de_json(data, bot)
        parse_update(update, bot_id=bot_id, username=username)
        parse_callback(update)
    except Exception as exc:  # a malformed field provokes whatever it provokes (TypeError, KeyError...)
        raise MalformedUpdate(f"not a Telegram update ({type(exc).__name__})") from exc
    return update
