"""The JSON shapes of sessions and turns that the page shows."""

from __future__ import annotations

from typing import Any

from bot.i18n import _
from bot.store import SessionInfo, TurnInfo

__all__ = ["image_type", "session_view", "thread_of", "turn_view"]

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def image_type(data: bytes) -> str:
    """The picture's MIME type from its first bytes (stored pictures were all checked on the way in)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return "application/octet-stream"


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


def turn_view(turn: TurnInfo) -> dict[str, Any]:
    return {
        "id": turn.id,
        "text": turn.command or turn.user_text,
        "images": list(turn.image_hashes),
        "answer": turn.answer,
        "status": turn.status,
        "error": turn.error,
        "in_context": turn.in_context,
        "latency_ms": turn.latency_ms,
        "output_tokens": turn.output_tokens,
        "created_at": turn.created_at.isoformat(),
    }
