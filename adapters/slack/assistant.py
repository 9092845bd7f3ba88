"""The Agents & AI Apps surface: an assistant thread's greeting, its suggested prompts and its title.

Slack opens an assistant thread in the app's DM and sends `assistant_thread_started`; the app greets
and offers at most four suggested prompts (`assistant.threads.setSuggestedPrompts`). The thread is
titled from its first question (`assistant.threads.setTitle`). Messages in the thread are ordinary
DM thread messages and go to the core like any other. The greeting and the suggestions are in the
user's language (the caller says them within `bot.i18n.speaking`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from bot.i18n import N_, _
from bot.presets import preset_named
from bot.transport import TransportError

from .calls import Poster

__all__ = ["GREETING", "SUGGESTED", "AssistantThreads", "suggested_prompts"]

log = logging.getLogger(__name__)

# The four presets offered (Slack shows at most four): reading text, tables and a description are the
# helpdesk's most common asks about a screenshot; `find` marks where something is. `code` (HTML from a
# mock-up) is left to /help.
SUGGESTED = (("ocr", ""), ("describe", ""), ("table", ""), ("find", N_("the error message")))
GREETING = N_("Hi! Send me a screenshot or a photo and ask about it, or attach one and pick a suggestion "
              "below. Say `clear` to start over.")
SUGGESTIONS_TITLE = N_("Try one of these on a picture:")
TITLE_LIMIT = 80
_STARTED_KEPT = 10_000


def suggested_prompts() -> list[dict[str, str]]:
    prompts = []
    for name, argument in SUGGESTED:
        preset = preset_named(name)
        assert preset is not None, name
        message = f"/{name} {_(argument)}".rstrip()
        prompts.append({"title": _(preset.description)[:75], "message": message})
    return prompts


def title_from(question: str) -> str:
    line = " ".join(question.split())
    return line if len(line) <= TITLE_LIMIT else line[: TITLE_LIMIT - 1].rstrip() + "…"


class AssistantThreads:
    """Greets new assistant threads and titles each from its first question."""

    def __init__(self, poster: Poster) -> None:
        self._poster = poster
        self._untitled: OrderedDict[tuple[str, str], None] = OrderedDict()  # started, no question yet

    async def started(self, channel: str, thread_ts: str) -> None:
        client = self._poster.client
        self._untitled[(channel, thread_ts)] = None
        while len(self._untitled) > _STARTED_KEPT:
            self._untitled.popitem(last=False)
        await self._poster.call(
            "chat.postMessage", lambda: client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=_(GREETING))
        )
        title, prompts = _(SUGGESTIONS_TITLE), suggested_prompts()
        await self._poster.call(
            "assistant.threads.setSuggestedPrompts",
            lambda: client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=thread_ts, title=title, prompts=prompts,
            ),
        )

    def is_assistant_thread(self, channel: str, thread_ts: str | None) -> bool:
        """DM threads are where Slack opens assistant threads."""
        return channel.startswith("D") and thread_ts is not None

    async def question(self, channel: str, thread_ts: str, text: str) -> None:
        """Title the thread from its first question (best effort: a title is cosmetic)."""
        if (channel, thread_ts) not in self._untitled or not text.strip() or text.startswith("/"):
            return
        del self._untitled[(channel, thread_ts)]
        client = self._poster.client
        try:
            await self._poster.call(
                "assistant.threads.setTitle",
                lambda: client.assistant_threads_setTitle(channel_id=channel, thread_ts=thread_ts, title=title_from(text)),
            )
        except TransportError as exc:
            log.info("slack: could not title the assistant thread %s/%s: %s", channel, thread_ts, exc)
