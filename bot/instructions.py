"""The operator's instructions: one file added to every conversation's system prompt, and files per
place (a Telegram chat, a Slack channel, the web chat) that extend or replace it.

In `VLMBOT_INSTRUCTIONS_DIR` a place's file is named for it:

    telegram_<chat id>.md    a Telegram chat; groups have negative ids: telegram_-1001234567890.md
    slack_<channel id>.md    a Slack channel or direct message: slack_C0123456789.md
    web.md                   the web chat
    console.md               the terminal chat

`<place>.md` is added after the general instructions (`VLMBOT_INSTRUCTIONS_FILE`);
`<place>.replace.md` is used instead of them. `.txt` works as well as `.md`.

Every file is read and measured at start, and a system prompt too long for the context budget stops
the start with one line. Later each question looks at its files' modification time and size (a few
`stat` calls) and reads a file again when it changed; a change that makes the prompt too long is
refused in the log and the last good prompt of that place stays in use.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.adapter import ConfigurationError
from bot.prompt import SYSTEM_PROMPT, system_prompt
from engine.interface import PromptTurn

__all__ = ["MAX_FILE_BYTES", "Instructions", "place_of"]

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 256 * 1024  # an instructions file is a page or two; anything near this is a mistake
_SUFFIXES = (".md", ".txt")
_PLACE = re.compile(r"^(?:telegram_-?\d+|slack_[A-Z0-9]+|web|console)$")
_TELEGRAM_CHAT = re.compile(r"^chat:(-?\d+)(?:/|$)")
_SLACK_CHANNEL = re.compile(r"^([A-Z0-9]+)(?:/|$)")

Counter = Callable[[Sequence[PromptTurn]], Awaitable[int]]


def place_of(platform: str, thread_key: str) -> str | None:
    """The place a conversation belongs to, as its instructions file is named; None when it has none.

    Follows the adapters' thread keys: Telegram "chat:<id>[/topic:<n>]", Slack "<channel>[/<ts>]";
    every web chat is the place "web" and every terminal chat "console".
    """
    if platform == "telegram":
        match = _TELEGRAM_CHAT.match(thread_key)
        return f"telegram_{match.group(1)}" if match else None
    if platform == "slack":
        match = _SLACK_CHANNEL.match(thread_key)
        return f"slack_{match.group(1)}" if match else None
    if platform in ("web", "console"):
        return platform
    return None


@dataclass(frozen=True)
class _Seen:
    mtime_ns: int
    size: int
    text: str | None
    error: str | None = None  # why the file as it is now cannot be used (the last good prompt stays)


class Unusable(ValueError):
    """An instructions file cannot be used as it is now (too long, unreadable); the message says why."""


class Instructions:
    """System prompts with the operator's instructions, read again when their files change."""

    def __init__(self, general: Path | None, directory: Path | None, count: Counter, limit: int) -> None:
        self._general = general
        self._directory = directory
        self._count = count
        self._limit = limit  # tokens the system prompt may take (part of VLMBOT_CONTEXT_TOKENS)
        self._files: dict[Path, _Seen] = {}
        self._good: dict[str, str] = {}  # place (or "") -> the last system prompt that fit
        self._sizes: OrderedDict[str, int] = OrderedDict()  # system prompt -> tokens, recent ones
        self._complaints: dict[str, str] = {}  # place -> the problem last logged (logged once)

    @property
    def configured(self) -> bool:
        return self._general is not None or self._directory is not None

    # --- at start ---------------------------------------------------------------------------------

    async def check(self) -> None:
        """Read every file and measure every place's system prompt; `ConfigurationError` with one line
        naming the file when one is missing, unreadable or too long."""
        if self._general is not None:
            if not self._general.is_file():
                raise ConfigurationError(f"VLMBOT_INSTRUCTIONS_FILE={self._general} does not exist or is not a file.")
            await self._checked("", self._general)
        if self._directory is None:
            return
        if not self._directory.is_dir():
            raise ConfigurationError(f"VLMBOT_INSTRUCTIONS_DIR={self._directory} does not exist or is not a directory.")
        places: dict[str, Path] = {}
        ignored = []
        for path in sorted(self._directory.iterdir()):
            if self._general is not None and path.resolve() == self._general.resolve():
                continue  # the general instructions may live beside the places' ones
            place = _place_of_file(path.name)
            if place is None or not path.is_file():
                ignored.append(path.name)
                continue
            if place in places:
                raise ConfigurationError(
                    f"{places[place]} and {path} both give instructions for {place}; keep one of them."
                )
            places[place] = path
        if ignored:
            log.warning(
                "%s: ignoring %s (not named telegram_<chat id>, slack_<channel id>, web or console, "
                "with .md, .txt, .replace.md or .replace.txt)", self._directory, ", ".join(ignored)
            )
        for place, path in places.items():
            await self._checked(place, path)
        log.info(
            "instructions: %s; %d place(s) with their own", self._general or "none in general", len(places)
        )

    async def _checked(self, place: str, path: Path) -> None:
        try:
            prompt = self._compose(place) if place else system_prompt(self._text(path))
            await self._fits(prompt)
        except (OSError, Unusable) as exc:
            raise ConfigurationError(f"{path}: {exc}") from None
        self._good[place] = prompt

    # --- for each question ------------------------------------------------------------------------

    async def system_prompt(self, platform: str, thread_key: str) -> str:
        """The system prompt for a conversation: built in, the general instructions, the place's."""
        if not self.configured:
            return SYSTEM_PROMPT
        place = place_of(platform, thread_key) or ""
        try:
            prompt = self._compose(place)
            await self._fits(prompt)
        except (OSError, Unusable) as exc:
            if self._complaints.get(place) != str(exc):
                self._complaints[place] = str(exc)
                log.error("instructions for %s: %s; the last good ones stay in use", place or "every place", exc)
            return self._good.get(place) or self._good.get("") or SYSTEM_PROMPT
        self._complaints.pop(place, None)
        self._good[place] = prompt
        return prompt

    def _compose(self, place: str) -> str:
        general = self._text(self._general) if self._general is not None else None
        if not place or self._directory is None:
            return system_prompt(general)
        replacing = self._first(place + ".replace")
        if replacing is not None:
            return system_prompt(self._text(replacing))
        extending = self._first(place)
        own = self._text(extending) if extending is not None else None
        parts = [part.strip() for part in (general, own) if part and part.strip()]
        return system_prompt("\n\n".join(parts))

    def _first(self, stem: str) -> Path | None:
        assert self._directory is not None
        for suffix in _SUFFIXES:
            path = self._directory / (stem + suffix)
            if path.is_file():
                return path
        return None

    def _text(self, path: Path) -> str | None:
        """The file's text, read again only when its modification time or size changed; None if gone."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._files.pop(path, None)
            return None
        seen = self._files.get(path)
        if seen is not None and (seen.mtime_ns, seen.size) == (stat.st_mtime_ns, stat.st_size):
            if seen.error is not None:
                raise Unusable(seen.error)
            return seen.text
        try:
            if stat.st_size > MAX_FILE_BYTES:
                raise Unusable(f"{stat.st_size} bytes; an instructions file may have at most {MAX_FILE_BYTES}")
            with open(path, "rb") as handle:
                text = handle.read(MAX_FILE_BYTES + 1).decode("utf-8")
        except (OSError, UnicodeDecodeError, Unusable) as exc:
            reason = str(exc) if not isinstance(exc, UnicodeDecodeError) else "not UTF-8 text"
            self._files[path] = _Seen(stat.st_mtime_ns, stat.st_size, None, reason)
            raise Unusable(reason) from None
        self._files[path] = _Seen(stat.st_mtime_ns, stat.st_size, text)
        if seen is not None:
            log.info("instructions file %s changed; read it again", path)
        return text

    async def _fits(self, prompt: str) -> None:
        tokens = self._sizes.get(prompt)
        if tokens is None:
            tokens = await self._count((PromptTurn("system", prompt),))
            self._sizes[prompt] = tokens
            while len(self._sizes) > 256:
                self._sizes.popitem(last=False)
        self._sizes.move_to_end(prompt)
        if tokens > self._limit:
            raise Unusable(
                f"the system prompt with these instructions is {tokens} tokens, more than the {self._limit} "
                "allowed (half of VLMBOT_CONTEXT_TOKENS); shorten the instructions or raise VLMBOT_CONTEXT_TOKENS"
            )


def _place_of_file(name: str) -> str | None:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)].removesuffix(".replace")
            return stem if _PLACE.match(stem) else None
    return None
