"""The JSON shapes of sessions and turns that the page shows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bot.i18n import _
from bot.pictures import PictureFiles
from bot.store import SessionInfo, Store, TurnInfo
from bot.stored_files import FileKind, kind_of
from bot.turn_notes import NoteKind

__all__ = ["image_type", "session_view", "thread_of", "turn_view", "video_hashes"]

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free")  # what an MP4/MOV file starts with, after its size
HEAD_BYTES = 12  # enough of a file for `image_type`


def image_type(data: bytes) -> str:
    """The stored file's MIME type from its first bytes (a picture or a recording; all were checked on the
    way in). Never a type a browser would run: anything unknown is bytes to download."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"\x1a\x45\xdf\xa3":  # EBML: the WebM recordings the page accepts
        return "video/webm"
    if data[4:8] in _MP4_BOXES:
        return "video/quicktime" if data[8:12] == b"qt  " else "video/mp4"
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return "application/octet-stream"


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(HEAD_BYTES)
    except OSError:  # gone or unreadable: listed as a picture, never a reason to fail the whole view
        return b""


async def video_hashes(store: Store, pictures: PictureFiles, turns: Iterable[TurnInfo]) -> frozenset[str]:
    """Which files the turns show are recordings (the page shows them as <video>, pictures as <img>).

    The types recorded when the files were kept answer in one query, without opening a file; only a file
    with no row in the store (none should lack one) is told by its first bytes."""
    hashes = {sha for turn in turns for sha in turn.image_hashes}
    types = await store.mime_types(hashes)
    if unrecorded := hashes - types.keys():
        heads = await asyncio.to_thread(lambda: {sha: _head(pictures.path(sha)) for sha in unrecorded})
        types |= {sha: image_type(head) for sha, head in heads.items()}
    return frozenset(sha for sha, mime in types.items() if kind_of(mime) is FileKind.VIDEO)


def thread_of(session: SessionInfo) -> str:
    """The web thread id inside a web session's thread key ("<user>/<thread>")."""
    return session.thread_key.rpartition("/")[2]


def session_view(session: SessionInfo, first_question: str | None = None) -> dict[str, Any]:
    label = session.title or " ".join((first_question or "").split())[:80] or _("New conversation")
    return {
        "id": session.id,
        "title": session.title,
        "label": label,
        "platform": session.platform,
        "thread": thread_of(session) if session.platform == "web" else session.thread_key,
        "status": session.status,
        "created_at": session.created_at.isoformat(),
        "updated_at": session.updated_at.isoformat(),
    }


def turn_view(turn: TurnInfo, videos: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {
        "id": turn.id,
        "text": turn.command or turn.user_text,
        "images": list(turn.image_hashes),
        "videos": [sha for sha in turn.image_hashes if sha in videos],
        "answer": turn.answer,
        # What the page showed beside the answer while it came: notices above it, refused files as error lines.
        "notices": [note.text for note in turn.notes if note.kind is NoteKind.NOTICE],
        "refused": [note.text for note in turn.notes if note.kind is NoteKind.REFUSED],
        "status": turn.status,
        "error": turn.error,
        "in_context": turn.in_context,
        "latency_ms": turn.latency_ms,
        "output_tokens": turn.output_tokens,
        "created_at": turn.created_at.isoformat(),
    }
