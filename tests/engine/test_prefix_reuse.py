"""Prefix reuse and the feature cache give the same first-token logits as a full recompute."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import torch

from engine.decode import ImageBudget
from engine.interface import PromptTurn
from engine.local import LocalEngine
from tests.engine.support import SYSTEM, Recorder, answer, ask, noisy_picture, recorder, reference_logits, started_engine

SMALL = 64 * 28 * 28
BUDGET = ImageBudget(4 * 28 * 28, SMALL, True)
ATOL = 1e-4


@pytest.fixture
async def engine(tiny_model_dir: Path) -> AsyncIterator[LocalEngine]:
    async with started_engine(tiny_model_dir, max_pixels=SMALL) as eng:
        eng.generate_hook = Recorder()
        yield eng


async def turn(engine: LocalEngine, rid: str, session: str, turns: list[PromptTurn]) -> tuple[str, torch.Tensor]:
    """Run one request; check its first-token logits against a full recompute; return the answer."""
    text, stats = await answer(engine, ask(rid, session, turns))
    assert stats.output_tokens == 5
    first = recorder(engine).logits[rid][0]
    expected = reference_logits(engine, turns, BUDGET)
    assert torch.allclose(first, expected, atol=ATOL), (rid, (first - expected).abs().max())
    return text, first


async def test_text_follow_up_after_a_picture(engine: LocalEngine) -> None:
    picture = noisy_picture((96, 64), seed=1)
    history = [SYSTEM, PromptTurn("user", "What is in the picture?", (picture,))]
    reply, _ = await turn(engine, "t1", "s", history)
    history += [PromptTurn("assistant", reply), PromptTurn("user", "And what colour is it?")]
    await turn(engine, "t2", "s", history)
    seen = recorder(engine).prefill["t2"]
    prompt_len = seen["input_ids"].shape[1]
    assert seen["pixel_values"] is None and seen["feature_hits"] == 0  # the picture is inside the reused prefix
    assert seen["image_grid_thw"].shape[0] == 1
    # At least the whole first prompt is reused (random weights' answers do not always re-tokenize
    # to the ids generated, so the answer itself may be read again).
    first_prompt = recorder(engine).prefill["t1"]["input_ids"].shape[1]
    assert first_prompt <= seen["cached_tokens"] < prompt_len


async def test_follow_up_adding_a_picture(engine: LocalEngine) -> None:
    first, second = noisy_picture((96, 64), seed=2), noisy_picture((64, 128), seed=3)
    history = [SYSTEM, PromptTurn("user", "What is in the picture?", (first,))]
    reply, _ = await turn(engine, "t1", "s", history)
    history += [PromptTurn("assistant", reply), PromptTurn("user", "Compare with this one.", (second,))]
    await turn(engine, "t2", "s", history)
    seen = recorder(engine).prefill["t2"]
    assert seen["image_grid_thw"].shape[0] == 2
    grid = seen["image_grid_thw"][1]
    assert seen["pixel_values"].shape[0] == int(grid.prod())  # only the new picture was encoded
    assert seen["cached_tokens"] > 0


async def test_after_undo_history_is_shorter(engine: LocalEngine) -> None:
    first, second = noisy_picture((96, 64), seed=4), noisy_picture((64, 96), seed=5)
    base = [SYSTEM, PromptTurn("user", "What is in the picture?", (first,))]
    reply, _ = await turn(engine, "t1", "s", base)
    base += [PromptTurn("assistant", reply)]
    await turn(engine, "t2", "s", base + [PromptTurn("user", "And this one?", (second,))])
    # /undo removed the second question: the next prompt branches off before the second picture.
    await turn(engine, "t3", "s", base + [PromptTurn("user", "Describe the first again.")])
    seen = recorder(engine).prefill["t3"]
    assert seen["cached_tokens"] > 0 and seen["pixel_values"] is None
    assert seen["image_grid_thw"].shape[0] == 1
    # /undo of the first turn as well: a different picture at the place of the cached one.
    await turn(engine, "t4", "s", [SYSTEM, PromptTurn("user", "What is in the picture?", (second,))])
    seen = recorder(engine).prefill["t4"]
    image_start = int((seen["input_ids"][0] == engine.loaded.model.config.image_token_id).nonzero()[0])
    assert seen["cached_tokens"] <= image_start  # identical visual token ids, different picture: not reused
    assert seen["feature_hits"] == 1  # but its features were computed in t2


async def test_two_sessions_interleaved(engine: LocalEngine) -> None:
    a_pic, b_pic = noisy_picture((96, 64), seed=6), noisy_picture((56, 140), seed=7)
    a = [SYSTEM, PromptTurn("user", "What is in the picture?", (a_pic,))]
    b = [SYSTEM, PromptTurn("user", "Read the text in this picture.", (b_pic,))]
    a_reply, _ = await turn(engine, "a1", "A", a)
    b_reply, _ = await turn(engine, "b1", "B", b)
    a += [PromptTurn("assistant", a_reply), PromptTurn("user", "Where is the power button?")]
    b += [PromptTurn("assistant", b_reply), PromptTurn("user", "Yes. No.")]
    await turn(engine, "a2", "A", a)
    await turn(engine, "b2", "B", b)
    assert recorder(engine).prefill["a2"]["cached_tokens"] > 0
    assert recorder(engine).prefill["b2"]["cached_tokens"] > 0


async def test_same_picture_in_another_session_and_after_release_uses_feature_cache(engine: LocalEngine) -> None:
    picture = noisy_picture((96, 64), seed=8)
    history = [SYSTEM, PromptTurn("user", "What is in the picture?", (picture,))]
    reply, _ = await turn(engine, "x1", "X", history)
    await turn(engine, "y1", "Y", [SYSTEM, PromptTurn("user", "Describe this picture.", (picture,))])
    seen = recorder(engine).prefill["y1"]
    assert seen["cached_tokens"] == 0 and seen["feature_hits"] == 1 and seen["pixel_values"] is None
    await engine.release_session("X")  # /clear
    assert ("", "X") not in engine._kv.sessions()
    history += [PromptTurn("assistant", reply), PromptTurn("user", "Again?")]
    await turn(engine, "x2", "X", history)
    seen = recorder(engine).prefill["x2"]
    assert seen["cached_tokens"] == 0 and seen["feature_hits"] == 1


async def test_everything_switched_off_gives_the_same_logits(tiny_model_dir: Path) -> None:
    async with started_engine(
        tiny_model_dir,
        max_pixels=SMALL,
        batch_size=1,
        prefix_cache=False,
        feature_cache_bytes=0,
        jpeg_draft=False,
    ) as eng:
        eng.generate_hook = Recorder()
        picture = noisy_picture((96, 64), seed=9)
        history = [SYSTEM, PromptTurn("user", "What is in the picture?", (picture,))]
        reply, _ = await answer(eng, ask("o1", "s", history))
        history += [PromptTurn("assistant", reply), PromptTurn("user", "And?")]
        await answer(eng, ask("o2", "s", history))
        seen = recorder(eng).prefill["o2"]
        assert seen["cached_tokens"] == 0 and seen["feature_hits"] == 0 and seen["pixel_values"] is not None
        expected = reference_logits(eng, history, ImageBudget(4 * 28 * 28, SMALL, False))
        assert torch.allclose(recorder(eng).logits["o2"][0], expected, atol=ATOL)
        stats = eng.cache_stats()
        assert stats.kv.entries == 0 and stats.features.entries == 0
