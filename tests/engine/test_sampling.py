"""Choosing a token cannot fail a neighbour: a row with broken scores or hostile limits ends alone (issue 11, finding 1)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import torch

from engine.interface import (
    EngineError,
    GenerationLimits,
    GenerationRequest,
    PromptTurn,
)
from engine.local import LocalEngine
from engine.sampling import MIN_TEMPERATURE, generator_for, penalize, pick
from tests.engine.support import SYSTEM, RealisticScores, Recorder, answer, ask, started_engine

SMALL = 64 * 28 * 28
TURNS = [SYSTEM, PromptTurn("user", "Where is the power button?")]


@pytest.fixture
async def engine(tiny_model_dir: Path) -> AsyncIterator[LocalEngine]:
    async with started_engine(tiny_model_dir, max_pixels=SMALL) as eng:
        yield eng


class Poison(Recorder):
    """Puts NaN (or +inf) into one request's scores from its `at`-th token on."""

    def __init__(self, victim: str, value: float, at: int = 3) -> None:
        super().__init__(delay=0.005)
        self.victim, self.value, self.at = victim, value, at
        self.seen = 0

    def on_logits(self, request_ids: Sequence[str], logits: torch.Tensor) -> None:
        super().on_logits(request_ids, logits)
        if self.victim in request_ids:
            self.seen += 1
            if self.seen >= self.at:
                logits[list(request_ids).index(self.victim), 5] = self.value


def hostile(rid: str, **limits: float) -> GenerationRequest:
    values = {"max_new_tokens": 30, "timeout_s": 120.0, **limits}
    return GenerationRequest(rid, rid, tuple(TURNS), GenerationLimits(**values))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, math.inf])
async def test_non_finite_scores_fail_that_request_alone(engine: LocalEngine, value: float) -> None:
    solo_hook = Recorder()
    engine.generate_hook = solo_hook
    solo_text, _ = await answer(engine, ask("solo", "solo", TURNS, 16))
    hook = Poison("bad", value)
    engine.generate_hook = hook
    long = asyncio.create_task(answer(engine, ask("long", "long", TURNS, 16)))
    await asyncio.to_thread(hook.stepped.wait, 10)
    bad = asyncio.create_task(answer(engine, hostile("bad", temperature=0.7)))
    with pytest.raises(EngineError) as caught:
        await bad
    assert "try again" in caught.value.user_message
    text, stats = await long
    assert stats.finish_reason == "length" and stats.output_tokens == 16
    assert text == solo_text  # the neighbour's answer is exactly what it is alone
    assert max(hook.batch_sizes) == 2  # they were in one batch when the scores went bad
    assert engine.health().ok and engine.health().running == 0


HOSTILE_LIMITS = [
    {"temperature": 1e-38},  # the attack: logits / 1e-38 are inf, softmax NaN
    {"temperature": 1e-38, "top_p": 1e-38},
    {"temperature": math.nan},
    {"temperature": math.inf, "top_p": math.nan},
    {"temperature": 5e-324, "top_p": -1.0},
    {"temperature": 0.7, "top_p": 0.0},
]


async def test_hostile_limits_in_a_batch_do_not_end_the_neighbour(engine: LocalEngine) -> None:
    """Replays finding 1 below the API (the engine server refuses most of these values before they get here)."""
    hook = RealisticScores(delay=0.005)
    engine.generate_hook = hook
    long = asyncio.create_task(answer(engine, ask("long", "long", TURNS, 24)))
    await asyncio.to_thread(hook.stepped.wait, 10)
    bad = [asyncio.create_task(answer(engine, hostile(f"bad{i}", **limits))) for i, limits in enumerate(HOSTILE_LIMITS)]
    _, stats = await long
    assert stats.finish_reason == "length" and stats.output_tokens == 24
    assert max(hook.batch_sizes) >= 2  # the hostile requests decoded in the long one's batch
    for outcome in await asyncio.gather(*bad, return_exceptions=True):
        if isinstance(outcome, BaseException):  # refusing a hostile request is fine; failing the neighbour is not
            assert isinstance(outcome, EngineError) and "try again" in outcome.user_message
        else:
            assert 1 <= outcome[1].output_tokens <= 30


def test_pick_is_greedy_below_the_temperature_floor() -> None:
    logits = torch.tensor([1.0, 3.0, 2.0, -math.inf])
    for temperature in (0.0, 1e-38, MIN_TEMPERATURE / 2, math.nan, math.inf):
        assert pick(logits, 1, GenerationLimits(temperature=temperature)) == 1
    torch.manual_seed(0)
    sampled = {pick(logits, 1, GenerationLimits(temperature=5.0)) for _ in range(200)}
    assert sampled == {0, 1, 2}  # -inf is never chosen
    assert {pick(logits, 1, GenerationLimits(temperature=5.0, top_p=0.3)) for _ in range(50)} == {1}


def test_pick_refuses_scores_that_give_no_probabilities() -> None:
    huge = torch.tensor([3e38, -3e38, 0.0])  # finite, but / 0.5 overflows
    with pytest.raises(ValueError):
        pick(huge, 0, GenerationLimits(temperature=MIN_TEMPERATURE))


def test_penalties_follow_openais_definition_per_row() -> None:
    logits = torch.zeros(6)
    generated = [2, 2, 2, 4]
    limits = GenerationLimits(presence_penalty=0.5, frequency_penalty=0.25)
    out = penalize(logits, generated, limits, end_ids={5})
    # logit -= count * frequency + (count > 0) * presence, over the generated tokens only
    assert out.tolist() == [0.0, 0.0, -(3 * 0.25 + 0.5), 0.0, -(0.25 + 0.5), 0.0]
    assert logits.tolist() == [0.0] * 6  # the batch's logits are not touched
    negative = penalize(logits, generated, GenerationLimits(presence_penalty=-2.0), end_ids=set())
    assert negative[2] == negative[4] == 2.0  # a negative penalty favours repetition
    assert penalize(logits, generated, GenerationLimits(), end_ids={5}) is logits  # nothing to apply


def test_penalties_change_which_token_is_chosen() -> None:
    logits = torch.tensor([1.0, 0.9, 0.1])
    limits = GenerationLimits(frequency_penalty=0.2)
    assert pick(penalize(logits, [], limits, set()), 0, limits) == 0
    penalized = penalize(logits, [0], limits, set())
    assert int(penalized.argmax()) == 1  # 1.0 - 0.2 < 0.9: the repeated token loses


def test_min_tokens_rules_out_end_tokens_until_reached() -> None:
    logits = torch.tensor([0.0, 5.0, 1.0])
    limits = GenerationLimits(min_tokens=2)
    held = penalize(logits, [2], limits, end_ids={1})
    assert held[1] == -math.inf and int(held.argmax()) == 2
    assert penalize(logits, [2, 2], limits, end_ids={1}) is logits


def test_a_seeded_generator_repeats_its_draws_whatever_else_is_drawn() -> None:
    probs_logits = torch.zeros(50)
    limits = GenerationLimits(temperature=1.0, seed=-7)  # negative seeds are valid OpenAI seeds
    alone = generator_for(limits, torch.device("cpu"))
    first = [pick(probs_logits, 0, limits, alone) for _ in range(10)]
    generator = generator_for(limits, torch.device("cpu"))
    second = []
    for _ in range(10):
        torch.rand(100)  # a neighbour drawing from the global generator
        second.append(pick(probs_logits, 0, limits, generator))
    assert first == second
    assert generator_for(GenerationLimits(), torch.device("cpu")) is None
