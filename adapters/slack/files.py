"""Downloading the files of a message from `url_private` with the bot token.

Without the `files:read` scope Slack does not refuse the download: it answers 200 with its HTML
sign-in page. That page is recognised here and reported, instead of being handed on as a picture.
"""

from __future__ import annotations

import logging

import aiohttp

from .events import SlackFile

__all__ = ["MISSING_FILES_READ", "DownloadError", "download"]

log = logging.getLogger(__name__)

MISSING_FILES_READ = (
    "I can't open files on this Slack workspace: the app is missing the files:read permission. "
    "Ask your Slack admin to add it and reinstall the app."
)
DOWNLOAD_FAILED = "I couldn't download {name} from Slack; please try sending it again."


class DownloadError(Exception):
    """A file could not be fetched; `user_message` says so to the user."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


def _looks_like_html(content_type: str, head: bytes) -> bool:
    if content_type.startswith("text/html"):
        return True
    start = head.lstrip()[:15].lower()
    return start.startswith(b"<!doctype html") or start.startswith(b"<html")


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


async def download(session: aiohttp.ClientSession, file: SlackFile, token: str, *, max_bytes: int) -> bytes:
    """The file's bytes; raises DownloadError (files:read missing, too big, HTTP failure)."""
    if not file.url:
        raise DownloadError(DOWNLOAD_FAILED.format(name=file.name))
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with session.get(file.url, headers=headers, timeout=aiohttp.ClientTimeout(total=60)) as resp:
            if resp.status != 200:
                log.warning("slack file %s download failed: HTTP %s", file.id, resp.status)
                raise DownloadError(DOWNLOAD_FAILED.format(name=file.name))
            data = await _read_capped(resp, max_bytes)
            if _looks_like_html(resp.content_type, data[:64]) and not file.mimetype.startswith("text/html"):
                log.error(
                    "slack file %s (%s): got an HTML sign-in page instead of the file; "
                    "the app lacks the files:read scope - add it in the app settings and reinstall",
                    file.id, file.name,
                )
                raise DownloadError(MISSING_FILES_READ)
            if len(data) > max_bytes:
                raise DownloadError(f"{file.name} is larger than the size limit; please send a smaller picture.")
            return data
    except aiohttp.ClientError as exc:
        log.warning("slack file %s download failed: %s", file.id, exc)
        raise DownloadError(DOWNLOAD_FAILED.format(name=file.name)) from exc
