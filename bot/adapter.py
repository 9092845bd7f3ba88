"""What the service needs from a platform adapter (Telegram, Slack, console, web)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Adapter", "ConfigurationError"]


class ConfigurationError(ValueError):
    """An adapter's settings are missing, unsafe or malformed; the message says what to set."""


@runtime_checkable
class Adapter(Protocol):
    """A platform connection. `start` returns once it is receiving; `stop` ends every task it made."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
