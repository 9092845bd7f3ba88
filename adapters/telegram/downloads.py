"""Fetching the pictures users send: sizes checked before any download, failures as short replies."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from telegram import Bot
from telegram.error import BadRequest, NetworkError

from bot.messages import Attachment

from .updates import MediaRef

__all__ = ["DOWNLOAD_LIMIT", "Downloaded", "Downloader", "too_big"]

log = logging.getLogger(__name__)

DOWNLOAD_LIMIT = 20 * 1024 * 1024  # Bot API getFile limit for bots
DOWNLOAD_FAILED = "I could not download that picture from Telegram. Please send it again."


def too_big(size: int) -> str:
    return (f"That file is {size / 1024**2:.1f} MB, and Telegram lets bots download at most 20 MB. "
            "Please send a smaller picture, or send it as a photo.")


@dataclass(frozen=True)
class Downloaded:
    """The attachments, or the sentence to tell the user instead."""

    attachments: tuple[Attachment, ...] = ()
    problem: str | None = None


class Downloader:
    def __init__(self, bot: Bot, check_size: Callable[[int | None], str | None]) -> None:
        self._bot = bot
        self._check_size = check_size  # the core's byte limit (Conversations.check_attachment_size)

    def size_problem(self, size: int | None) -> str | None:
        if size is not None and size > DOWNLOAD_LIMIT:
            return too_big(size)
        return self._check_size(size)

    async def fetch(self, media: tuple[MediaRef, ...], chat_id: int) -> Downloaded:
        for item in media:  # every size is checked before anything is downloaded
            if problem := self.size_problem(item.file_size):
                return Downloaded(problem=problem)
        attachments = []
        for item in media:
            try:
                file = await self._bot.get_file(item.file_id)
                if problem := self.size_problem(file.file_size):
                    return Downloaded(problem=problem)
                data = bytes(await file.download_as_bytearray())
            except BadRequest as err:
                log.warning("telegram: getFile failed for %s in chat %s: %s", item.file_id, chat_id, err)
                if "too big" in str(err).lower():
                    return Downloaded(problem=too_big(item.file_size or DOWNLOAD_LIMIT + 1))
                return Downloaded(problem=DOWNLOAD_FAILED)
            except NetworkError as err:
                log.warning("telegram: download failed for %s in chat %s: %s", item.file_id, chat_id, err)
                return Downloaded(problem=DOWNLOAD_FAILED)
            if problem := self._check_size(len(data)):
                return Downloaded(problem=problem)
            attachments.append(Attachment(data=data, filename=item.filename, mime_type=item.mime_type))
        return Downloaded(tuple(attachments))
