"""Turning a session's stored turns into the prompt the model sees, within a token budget."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.store import TurnInfo
from engine.interface import PromptImage, PromptTurn

__all__ = ["SYSTEM_PROMPT", "BuiltPrompt", "PromptBudget", "build_prompt", "label_pictures", "pending_pictures"]

SYSTEM_PROMPT = (
    "You are a helpdesk assistant. People show you photos and screenshots (error dialogs, device panels, "
    "invoices, charts, UI mock-ups) and ask about them. Answer precisely and briefly, quote text exactly as "
    "it appears, and say so when something is not visible in the picture."
)

# Statuses whose answer the model should see; other finished turns only contribute their pictures.
_ANSWERED = {"done"}


@dataclass(frozen=True)
class PromptBudget:
    context_tokens: int
    tokens_per_image: int  # upper bound from the pixel budget: max_pixels / (patch factor)^2

    def estimate(self, text: str, images: int) -> int:
        # ~3 characters a token is a safe over-estimate for English text with the Qwen tokenizer.
        return len(text) // 3 + 8 + images * (self.tokens_per_image + 2)


@dataclass(frozen=True)
class BuiltPrompt:
    turns: tuple[PromptTurn, ...]
    left_out: int  # earlier exchanges not included because of the budget


@dataclass(frozen=True)
class _Exchange:
    user_text: str
    hashes: tuple[str, ...]
    answer: str | None


def _exchanges(history: Sequence[TurnInfo]) -> list[_Exchange]:
    """Group stored turns into user/assistant exchanges; unanswered pictures join the next question."""
    exchanges: list[_Exchange] = []
    carried: list[str] = []
    for turn in history:
        if turn.status in _ANSWERED and turn.answer is not None:
            exchanges.append(_Exchange(turn.user_text, tuple(carried) + turn.image_hashes, turn.answer))
            carried = []
        else:
            carried.extend(turn.image_hashes)
    if carried:
        exchanges.append(_Exchange("", tuple(carried), None))
    return exchanges


def label_pictures(text: str, count: int) -> str:
    """Name the pictures of one message "Picture 1", "Picture 2", ... so a question can refer to them.

    The engines put a message's pictures before its text, in order, so the label line says so.
    """
    if count < 2:
        return text
    names = ", ".join(f"Picture {n}" for n in range(1, count + 1))
    return f"(The {count} pictures above are, in order: {names}.)\n{text}"


def pending_pictures(history: Sequence[TurnInfo]) -> tuple[str, ...]:
    """Pictures sent since the last answer, which `build_prompt` puts into the next question."""
    exchanges = _exchanges(history)
    return exchanges[-1].hashes if exchanges and exchanges[-1].answer is None else ()


async def build_prompt(
    history: Sequence[TurnInfo],
    question: TurnInfo,
    budget: PromptBudget,
    load_image: Callable[[str], Awaitable[bytes]],
) -> BuiltPrompt:
    """History (oldest first, the question excluded) plus the question, newest kept first."""
    exchanges = _exchanges(history)
    carried: tuple[str, ...] = ()
    if exchanges and exchanges[-1].answer is None:
        carried = exchanges.pop().hashes
    question_hashes = carried + question.image_hashes
    question_text = label_pictures(question.user_text, len(question_hashes))
    used = budget.estimate(SYSTEM_PROMPT, 0) + budget.estimate(question_text, len(question_hashes))
    kept: list[_Exchange] = []
    for exchange in reversed(exchanges):
        cost = budget.estimate(label_pictures(exchange.user_text, len(exchange.hashes)), len(exchange.hashes))
        cost += budget.estimate(exchange.answer or "", 0)
        if used + cost > budget.context_tokens:
            break
        kept.append(exchange)
        used += cost
    kept.reverse()

    cache: dict[str, PromptImage] = {}

    async def images(hashes: Sequence[str]) -> tuple[PromptImage, ...]:
        out = []
        for sha in hashes:
            if sha not in cache:
                cache[sha] = PromptImage(sha256=sha, data=await load_image(sha))
            out.append(cache[sha])
        return tuple(out)

    turns: list[PromptTurn] = [PromptTurn("system", SYSTEM_PROMPT)]
    for exchange in kept:
        user_text = label_pictures(exchange.user_text, len(exchange.hashes))
        turns.append(PromptTurn("user", user_text, await images(exchange.hashes)))
        turns.append(PromptTurn("assistant", exchange.answer or ""))
    turns.append(PromptTurn("user", question_text, await images(question_hashes)))
    return BuiltPrompt(turns=tuple(turns), left_out=len(exchanges) - len(kept))
