"""The daily prune while the bot runs: `VLMBOT_RETENTION_DAYS`, and picture files nothing refers to."""

from __future__ import annotations

import asyncio
import logging

from bot.erasure import DataRemoval
from engine.interface import Engine

__all__ = ["DAY_S", "prune_daily"]

log = logging.getLogger(__name__)

DAY_S = 24 * 3600.0


async def prune_daily(removal: DataRemoval, retention_days: int, engine: Engine, *, every_s: float = DAY_S) -> None:
    """Prune now and then every `every_s`; the engine forgets the caches of conversations that lost turns."""
    while True:
        try:
            removed = await removal.prune(retention_days)
            for session_id in removed.touched_sessions:
                await engine.release_session(session_id)  # its KV cache still holds the removed turns
        except Exception:  # a failed prune must not end the bot; the next one retries everything
            log.exception("the daily prune failed; it runs again in %.0f s", every_s)
        await asyncio.sleep(every_s)
