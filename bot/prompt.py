"""Turning a session's stored turns into the prompt the model sees, within a token budget.

The budget is counted by the engine (`Engine.count_prompt_tokens`: exact in process, an upper bound
for a remote server), on the whole prompt as it will be sent: the newest exchanges that fit are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.i18n import _
from bot.messages import Generating
from bot.picture_sources import PictureSource, SourceKind, picture_names
from bot.store import TurnInfo
from bot.videos import duration_label, is_video, video_seconds
from engine.interface import PromptImage, PromptTurn, PromptVideo

__all__ = [
    "SYSTEM_PROMPT",
    "BuiltPrompt",
    "PromptTooLong",
    "build_prompt",
    "label_pictures",
    "label_videos",
    "pending_pictures",
    "pending_turns",
    "reading_status",
    "system_prompt",
]

SYSTEM_PROMPT = (
    "You are a helpdesk assistant. People show you photos and screenshots (error dialogs, device panels, "
    "invoices, charts, UI mock-ups) and ask about them. Answer precisely and briefly, quote text exactly as "
    "it appears, and say so when something is not visible in the picture."
)

# Statuses whose answer the model should see; other finished turns only contribute their pictures.
_ANSWERED = {"done"}

Counter = Callable[[Sequence[PromptTurn]], Awaitable[int]]


def system_prompt(instructions: str | None) -> str:
    """The built-in system prompt, followed by the operator's instructions when there are any."""
    if not instructions or not instructions.strip():
        return SYSTEM_PROMPT
    return f"{SYSTEM_PROMPT}\n\n{instructions.strip()}"


class PromptTooLong(Exception):
    """Even without any earlier exchange the prompt exceeds the budget."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(f"the prompt needs {tokens} tokens without history; the budget is {limit}")
        self.tokens = tokens
        self.limit = limit
        self.user_message = _(
            "This question and its pictures need {tokens} tokens, more than the {limit} this bot can read "
            "at once, so it was set aside; please shorten it or send fewer pictures."
        ).format(tokens=tokens, limit=limit)


@dataclass(frozen=True)
class BuiltPrompt:
    turns: tuple[PromptTurn, ...]
    left_out: int  # earlier exchanges not included because of the budget
    tokens: int  # as the engine counts them (an upper bound for a remote engine)


@dataclass(frozen=True)
class _Exchange:
    user_text: str
    hashes: tuple[str, ...]
    answer: str | None
    sources: tuple[PictureSource, ...] = ()


def _exchanges(history: Sequence[TurnInfo]) -> list[_Exchange]:
    """Group stored turns into user/assistant exchanges; unanswered pictures join the next question."""
    exchanges: list[_Exchange] = []
    carried: list[str] = []
    sources: list[PictureSource] = []
    for turn in history:
        if turn.status in _ANSWERED and turn.answer is not None:
            exchanges.append(
                _Exchange(turn.user_text, tuple(carried) + turn.image_hashes, turn.answer, (*sources, *turn.image_sources))
            )
            carried, sources = [], []
        else:
            carried.extend(turn.image_hashes)
            sources.extend(turn.image_sources)
    if carried:
        exchanges.append(_Exchange("", tuple(carried), None, tuple(sources)))
    return exchanges


def label_pictures(text: str, count: int, names: Sequence[str] = ()) -> str:
    """Name the pictures of one message "Picture 1", "Picture 2", ... so a question can refer to them;
    `names` when some are a PDF's pages or a screenshot's tiles (`bot.picture_sources.picture_names`).

    The engines put a message's pictures before its text, in order, so the label line says so.
    """
    names = list(names) or [f"Picture {n}" for n in range(1, count + 1)]
    if count < 2 and names[:1] in ([], ["Picture 1"]):
        return text
    if count == 1:
        return f"(The picture above is {names[0]}.)\n{text}"
    return f"(The {count} pictures above are, in order: {', '.join(names)}.)\n{text}"


def label_videos(text: str, durations: Sequence[float | None]) -> str:
    """Tell the model how long each video of the message is, so its answer can point at moments ("at 0:04").

    The engines put a message's videos before its pictures."""
    if not durations:
        return text
    if len(durations) == 1 and durations[0] is None:
        return f"(The length of the video above is unknown; say when things happen, as in \"at 0:02\".)\n{text}"
    if len(durations) == 1:
        return f"(The video above is {duration_label(durations[0])} long; say when things happen, as in \"at 0:02\".)\n{text}"
    names = ", ".join(f"Video {n} ({duration_label(d)})" for n, d in enumerate(durations, 1))
    return f"(The {len(durations)} videos above are, in order: {names}; say when things happen, as in \"at 0:02\".)\n{text}"


def pending_turns(history: Sequence[TurnInfo]) -> Sequence[TurnInfo]:
    """The turns since the last answered one: their pictures join the next question."""
    for index in range(len(history) - 1, -1, -1):
        if history[index].status in _ANSWERED and history[index].answer is not None:
            return history[index + 1 :]
    return history


def reading_status(question: PromptTurn, asked: Sequence[TurnInfo]) -> Generating:
    """What the model reads for the question: its pictures, videos, and the pictures that are a PDF's
    pages (by the sources of `asked`, the stored turns whose files the question carries)."""
    pages = {part for turn in asked for source in turn.image_sources if source.kind is SourceKind.PDF for part in source.parts}
    from_pdf = sum(image.sha256 in pages for image in question.images)
    return Generating(pictures=len(question.images) - from_pdf, videos=len(question.videos), pages=from_pdf)


def pending_pictures(history: Sequence[TurnInfo]) -> tuple[str, ...]:
    """Pictures sent since the last answer, which `build_prompt` puts into the next question."""
    exchanges = _exchanges(history)
    return exchanges[-1].hashes if exchanges and exchanges[-1].answer is None else ()


async def build_prompt(
    history: Sequence[TurnInfo],
    question: TurnInfo,
    *,
    system: str,
    context_tokens: int,
    count: Counter,
    load_image: Callable[[str], Awaitable[bytes]],
) -> BuiltPrompt:
    """History (oldest first, the question excluded) plus the question: the most recent exchanges whose
    whole prompt, as `count` measures it, stays within `context_tokens`. Raises `PromptTooLong`."""
    exchanges = _exchanges(history)
    carried = _Exchange("", (), None)
    if exchanges and exchanges[-1].answer is None:
        carried = exchanges.pop()
    asked = _Exchange(question.user_text, carried.hashes + question.image_hashes, None, (*carried.sources, *question.image_sources))
    cache: dict[str, PromptImage | tuple[PromptVideo, float | None]] = {}

    async def user_turn(text: str, hashes: Sequence[str], sources: Sequence[PictureSource]) -> PromptTurn:
        """A user message with its pictures and videos (told apart by their bytes), each labelled;
        pictures made from a PDF or a long screenshot are named by `sources`."""
        images, videos, durations = [], [], []
        for sha in hashes:
            if sha not in cache:
                data = await load_image(sha)
                if is_video(data):  # the container's header only; still, off the event loop
                    cache[sha] = (PromptVideo(sha256=sha, data=data), await asyncio.to_thread(video_seconds, data))
                else:
                    cache[sha] = PromptImage(sha256=sha, data=data)
            found = cache[sha]
            if isinstance(found, PromptImage):
                images.append(found)
            else:
                videos.append(found[0])
                durations.append(found[1])
        names = picture_names([image.sha256 for image in images], sources)
        labelled = label_videos(label_pictures(text, len(images), names), durations)
        return PromptTurn("user", labelled, tuple(images), tuple(videos))

    question_turn = await user_turn(question.user_text, asked.hashes, asked.sources)
    pairs: list[tuple[PromptTurn, PromptTurn]] = []  # newest first, loaded as the search needs them

    async def prompt_with(kept: int) -> tuple[PromptTurn, ...]:
        while len(pairs) < kept:
            exchange = exchanges[len(exchanges) - 1 - len(pairs)]
            user = await user_turn(exchange.user_text, exchange.hashes, exchange.sources)
            pairs.append((user, PromptTurn("assistant", exchange.answer or "")))
        older = [turn for pair in reversed(pairs[:kept]) for turn in pair]
        return (PromptTurn("system", system), *older, question_turn)

    # The count grows with every exchange kept: the longest history that fits, by bisection (one
    # count when everything fits, as it does in most conversations).
    turns = await prompt_with(len(exchanges))
    tokens = await count(turns)
    if tokens <= context_tokens:
        return BuiltPrompt(turns=turns, left_out=0, tokens=tokens)
    low, high = 0, len(exchanges) - 1
    best: tuple[int, tuple[PromptTurn, ...], int] | None = None
    while low <= high:
        middle = (low + high) // 2
        candidate = await prompt_with(middle)
        tokens = await count(candidate)
        if tokens <= context_tokens:
            best, low = (middle, candidate, tokens), middle + 1
        else:
            high = middle - 1
    if best is None:  # the last try was the question alone
        raise PromptTooLong(tokens, context_tokens)
    kept, turns, tokens = best
    return BuiltPrompt(turns=turns, left_out=len(exchanges) - kept, tokens=tokens)
