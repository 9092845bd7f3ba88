"""Slack message events -> plain values: who, where, which thread, and the delivery key.

Thread keys are "CHANNEL/ROOT_TS"; a DM's top-level messages share the key "CHANNEL" (one running
conversation) while a thread inside a DM is its own "CHANNEL/ROOT_TS".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.incoming import IncomingFile

__all__ = ["SlackMessage", "parse_message", "strip_mention"]

# Message subtypes that carry something a user wrote; edits, deletions, joins, bot posts are not.
_USER_SUBTYPES = {None, "file_share", "thread_broadcast"}


@dataclass(frozen=True)
class SlackMessage:
    team: str | None
    channel: str
    user: str
    ts: str
    thread_ts: str | None
    text: str  # as Slack sent it, mentions included
    files: tuple[IncomingFile, ...]  # `ref` is the url_private(_download) to fetch it from
    is_dm: bool
    mentioned: bool  # the bot is mentioned (always true for app_mention)

    @property
    def root_ts(self) -> str:
        return self.thread_ts or self.ts

    @property
    def delivery_key(self) -> str:
        """The same for every delivery of this message: retries, duplicate event ids, and the
        `message` + `app_mention` pair Slack sends for one mention."""
        return f"{self.channel}/{self.ts}"

    @property
    def in_thread(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def thread_key(self) -> str:
        if self.is_dm and not self.in_thread:
            return self.channel
        return f"{self.channel}/{self.root_ts}"

    @property
    def reply_thread_ts(self) -> str | None:
        """Where replies go: the thread, except for top-level DM messages (answered in the DM)."""
        if self.is_dm and not self.in_thread:
            return None
        return self.root_ts


def _file(entry: dict[str, Any]) -> IncomingFile:
    size = entry.get("size")
    return IncomingFile(
        name=str(entry.get("name") or entry.get("title") or entry.get("id") or "file"),
        mime_type=str(entry.get("mimetype") or "application/octet-stream"),
        size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        ref=str(entry.get("url_private_download") or entry.get("url_private") or ""),
    )


def parse_message(event: dict[str, Any], *, bot_user_id: str | None, team: str | None) -> SlackMessage | None:
    """A `message` or `app_mention` event from a person, or None for everything to ignore."""
    if event.get("type") not in ("message", "app_mention"):
        return None
    if event.get("subtype") not in _USER_SUBTYPES or event.get("bot_id") or not event.get("user"):
        return None
    if bot_user_id and event.get("user") == bot_user_id:
        return None
    channel = str(event.get("channel") or "")
    if not channel:
        return None
    text = str(event.get("text") or "")
    is_dm = event.get("channel_type") == "im" or (event.get("channel_type") is None and channel.startswith("D"))
    mentioned = event.get("type") == "app_mention" or (
        bot_user_id is not None and re.search(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", text) is not None
    )
    return SlackMessage(
        # the user's own workspace (differs from the installing one in shared channels)
        team=event.get("user_team") or event.get("team") or team,
        channel=channel,
        user=str(event["user"]),
        ts=str(event.get("ts")),
        thread_ts=event.get("thread_ts"),
        text=text,
        files=tuple(_file(f) for f in event.get("files") or () if isinstance(f, dict)),
        is_dm=is_dm,
        mentioned=mentioned,
    )


def strip_mention(text: str, bot_user_id: str | None) -> str:
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
