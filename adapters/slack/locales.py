"""Each Slack user's locale (`users.info` with `include_locale`), cached, as the language the core
speaks to them.

Looked up when the user's message has its turn, not in the listener (which runs before the
acknowledgement). A failed lookup (no `users:read` scope, a user of another workspace, Slack down)
means "unknown" (the core then speaks English) and is remembered like a success, so a missing
scope costs one call per user and hour, not one per message.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from bot.incoming import Sender
from bot.language import Language, from_tag
from bot.transport import TransportError

from .calls import Poster

__all__ = ["SlackLocales"]

log = logging.getLogger(__name__)


class SlackLocales:
    """The core's `LanguageLookup` for Slack users."""

    def __init__(self, poster: Poster, *, ttl_s: float = 3600.0, size: int = 10_000) -> None:
        self._poster = poster
        self._ttl_s = ttl_s
        self._size = size
        self._known: OrderedDict[str, tuple[float, Language | None]] = OrderedDict()

    async def language(self, sender: Sender) -> Language | None:
        now = time.monotonic()
        cached = self._known.get(sender.user_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        language = await self._look_up(sender.user_id)
        self._known[sender.user_id] = (now, language)
        self._known.move_to_end(sender.user_id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)
        return language

    async def _look_up(self, user_id: str) -> Language | None:
        client = self._poster.client
        try:
            info = await self._poster.call("users.info", lambda: client.users_info(user=user_id, include_locale=True))
        except TransportError as exc:
            log.info("slack: the locale of user %s is unknown (%s); speaking the default language", user_id, exc)
            return None
        user = info.get("user") if isinstance(info.data, dict) else None
        locale = user.get("locale") if isinstance(user, dict) else None
        return from_tag(locale) if isinstance(locale, str) else None
