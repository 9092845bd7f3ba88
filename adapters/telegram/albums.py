"""Album (media group) collection: Telegram sends each picture of an album as its own message.

Items sharing a `media_group_id` are gathered until no new item has arrived for `delay` seconds,
then merged into one Inbound carrying every picture and the caption.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from .updates import Inbound

__all__ = ["AlbumCollector", "merge_album"]


def merge_album(items: list[Inbound]) -> Inbound:
    items = sorted(items, key=lambda i: i.message_id)
    first = items[0]
    caption = next((i.text for i in items if i.text), "")
    media = tuple(m for i in items for m in i.media)
    unsupported = None if media else next((i.unsupported for i in items if i.unsupported), None)
    return replace(
        first, text=caption, media=media, unsupported=unsupported, addressed=any(i.addressed for i in items)
    )


class _Album:
    def __init__(self) -> None:
        self.items: list[Inbound] = []
        self.touched = asyncio.Event()


class AlbumCollector:
    """`add` is True for an album's first item: its caller then awaits `settle` for the whole album."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._albums: dict[tuple[int, str], _Album] = {}

    def add(self, item: Inbound) -> bool:
        assert item.media_group_id is not None
        key = (item.chat_id, item.media_group_id)
        album = self._albums.get(key)
        if album is not None:
            album.items.append(item)
            album.touched.set()
            return False
        album = self._albums[key] = _Album()
        album.items.append(item)
        return True

    async def settle(self, first: Inbound) -> Inbound:
        """Wait until the album of `first` has been quiet for `delay` seconds; return it merged."""
        key = (first.chat_id, first.media_group_id or "")
        album = self._albums[key]
        try:
            while True:
                album.touched.clear()
                try:
                    await asyncio.wait_for(album.touched.wait(), self.delay)
                except TimeoutError:
                    break
        finally:
            del self._albums[key]
        return merge_album(album.items)
