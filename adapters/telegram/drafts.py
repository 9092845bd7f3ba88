"""Answer drafts (Bot API 10.0 `sendMessageDraft`): which chats take them, and showing one.

Telegram shows a draft only in private chats; a chat where it is refused (an older Bot API server, a
chat type it does not allow) is remembered for the adapter's lifetime, and its answers grow by edits.
"""

from __future__ import annotations

import logging

from telegram.error import BadRequest, EndPointNotFound

from .outbox import Outbox, Target
from .render import Chunk

__all__ = ["Drafts"]

log = logging.getLogger(__name__)


class Drafts:
    """One per adapter."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._refused: set[int] = set()  # chats where sendMessageDraft failed

    def available(self, chat_id: int) -> bool:
        return chat_id not in self._refused

    async def show(self, target: Target, draft_id: int, content: Chunk) -> bool:
        """Show `content` as draft `draft_id`; False when the chat takes no drafts (now or before).
        Other failures (blocked, network, flood control beyond waiting) are raised as they come."""
        if target.chat_id in self._refused:
            return False
        try:
            await self._outbox.draft(target, draft_id, content)
        except (BadRequest, EndPointNotFound) as err:
            self._refused.add(target.chat_id)
            log.warning("telegram: sendMessageDraft refused in chat %s (%s); answers there grow by edits", target.chat_id, err)
            return False
        return True
