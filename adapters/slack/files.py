"""Downloading the files of a message from `url_private` with the bot token (the core's `FileFetcher`).

Without the `files:read` scope Slack does not refuse the download: it answers 200 with its HTML
sign-in page. That page is recognised here and reported, instead of being handed on as a picture.
"""

from __future__ import annotations

import logging

import aiohttp

from bot.i18n import _
from bot.incoming import FetchFailed, IncomingFile
from bot.wording import FILES_READ_MISSING, download_failed

__all__ = ["SlackFiles"]

log = logging.getLogger(__name__)


def _looks_like_html(content_type: str, head: bytes) -> bool:
    if content_type.startswith("text/html"):
        return True
    start = head.lstrip()[:15].lower()
    return start.startswith((b"<!doctype html", b"<html"))


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body, but never more than max_bytes + 1 bytes (enough to tell it is too big)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            break
    return b"".join(chunks)[: max_bytes + 1]


class SlackFiles:
    """`IncomingFile.ref` is the file's url_private(_download); reads stop one byte past `max_bytes`,
    so the core's size check sees a file that is too big without the rest being downloaded."""

    def __init__(self, session: aiohttp.ClientSession, token: str, *, max_bytes: int) -> None:
        self._session = session
        self._token = token
        self._max_bytes = max_bytes

    def check(self, file: IncomingFile) -> str | None:
        return None  # Slack serves any file the workspace holds; the core checks the size

    async def fetch(self, file: IncomingFile) -> bytes:
        if not file.ref:
            raise FetchFailed(download_failed(file.name))
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._session.get(file.ref, headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as resp:
                if resp.status != 200:
                    log.warning("slack file %s download failed: HTTP %s", file.name, resp.status)
                    raise FetchFailed(download_failed(file.name))
                data = await _read_capped(resp, self._max_bytes)
                if _looks_like_html(resp.content_type, data[:64]) and not (file.mime_type or "").startswith("text/html"):
                    log.error(
                        "slack file %s: got an HTML sign-in page instead of the file; "
                        "the app lacks the files:read scope - add it in the app settings and reinstall",
                        file.name,
                    )
                    raise FetchFailed(_(FILES_READ_MISSING))
                return data
        except aiohttp.ClientError as exc:
            log.warning("slack file %s download failed: %s", file.name, exc)
            raise FetchFailed(download_failed(file.name)) from exc
