"""The Slack transports' call wrapper: one back-off clock per Web API method.

Slack rate-limits per method and workspace (chat.update is tier 3, about 50 a minute) and answers
429 with `Retry-After`; a call waits the block out and tries again. The renderer meanwhile keeps
the text, and its next update carries all of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.transport import TransportError

__all__ = ["Poster"]

log = logging.getLogger(__name__)

# Errors after which nobody in the conversation can be written to.
GONE = frozenset({"channel_not_found", "not_in_channel", "is_archived", "account_inactive", "invalid_auth"})


class Poster:
    """Web API writes shared by every reply of the adapter, with one back-off clock per method."""

    def __init__(self, client: AsyncWebClient, *, max_attempts: int = 5) -> None:
        self.client = client
        self._blocked_until: dict[str, float] = {}
        self._max_attempts = max_attempts

    def blocked_for(self, method: str) -> float:
        return max(0.0, self._blocked_until.get(method, 0.0) - time.monotonic())

    async def call(self, method: str, send: Callable[[], Awaitable[Any]]) -> Any:
        """Run `send`; on 429 remember Retry-After for `method`, sleep the block out and try again.
        Raises TransportError when Slack refuses (or still rate-limits after `max_attempts`)."""
        for _ in range(self._max_attempts):
            delay = self.blocked_for(method)
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                return await send()
            except SlackApiError as exc:
                if exc.response.status_code != 429:
                    error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
                    raise TransportError(f"slack {method}: {error or exc}", gone=error in GONE) from exc
                retry_after = float(exc.response.headers.get("Retry-After", "1") or 1)
                self._blocked_until[method] = time.monotonic() + retry_after
                log.warning("slack %s rate-limited: retrying after %.0f s", method, retry_after)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransportError(f"slack {method}: {type(exc).__name__}: {exc}") from exc
        raise TransportError(f"slack {method} still rate-limited after {self._max_attempts} attempts")
