"""Telegram adapter (python-telegram-bot v22): photos, files and albums in, streamed replies out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TelegramAdapter"]

if TYPE_CHECKING:
    from .adapter import TelegramAdapter


def __getattr__(name: str) -> Any:
    # Lazy, so importing a helper module (render, access) does not load the bot core or the SDK.
    if name == "TelegramAdapter":
        from .adapter import TelegramAdapter

        return TelegramAdapter
    raise AttributeError(name)
