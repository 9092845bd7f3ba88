"""Fetching the pictures users send (the core's `FileFetcher`): Telegram's download limit, failures as one line."""

from __future__ import annotations

import logging

from telegram import Bot
from telegram.constants import FileSizeLimit
from telegram.error import BadRequest, NetworkError

from bot.incoming import FetchFailed, IncomingFile
from bot.wording import download_failed, over_download_limit

__all__ = ["DOWNLOAD_LIMIT", "Downloader"]

log = logging.getLogger(__name__)

DOWNLOAD_LIMIT = FileSizeLimit.FILESIZE_DOWNLOAD  # getFile serves bots files up to 20 MB


def _too_big(size: int) -> str:
    return over_download_limit(size, DOWNLOAD_LIMIT, "Telegram")


class Downloader:
    def __init__(self, bot: Bot) -> None:
        self._bot = bot

    def check(self, file: IncomingFile) -> str | None:
        if file.size is not None and file.size > DOWNLOAD_LIMIT:
            return _too_big(file.size)
        return None

    async def fetch(self, file: IncomingFile) -> bytes:
        try:
            found = await self._bot.get_file(file.ref)
            if found.file_size is not None and found.file_size > DOWNLOAD_LIMIT:
                raise FetchFailed(_too_big(found.file_size))
            return bytes(await found.download_as_bytearray())
        except BadRequest as err:
            log.warning("telegram: getFile failed for %s: %s", file.ref, err)
            if "too big" in str(err).lower():
                raise FetchFailed(_too_big(file.size or DOWNLOAD_LIMIT + 1)) from err
            raise FetchFailed(download_failed(file.name)) from err
        except NetworkError as err:
            log.warning("telegram: download failed for %s: %s", file.ref, err)
            raise FetchFailed(download_failed(file.name)) from err
