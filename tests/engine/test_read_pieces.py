"""While an answer streams, a newcomer's pictures and prompt are read in pieces between its decode
steps, and the newcomer's first-token scores are those of a full recompute (both architectures)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from engine.decode import ImageBudget
from engine.interface import PromptTurn
from tests.engine.support import SYSTEM, Recorder, answer, ask, noisy_picture, reference_logits, started_engine

BUDGET = ImageBudget(4 * 28 * 28, 256 * 28 * 28, True)
QUESTION = [SYSTEM, PromptTurn("user", "Where is the power button?")]


class Timeline(Recorder):
    def __init__(self) -> None:
        super().__init__(delay=0.002)
        self.events: list[tuple[str, str]] = []

    def on_step(self, request_ids: Sequence[str]) -> None:
        self.events.append(("step", ",".join(request_ids)))
        super().on_step(request_ids)

    def on_prefill_chunk(self, request_id: str, start: int, end: int) -> None:
        self.events.append(("chunk", request_id))


async def test_a_newcomer_is_read_in_pieces_between_the_steps_of_a_running_answer(tiny_model_dir: Path) -> None:
    async with started_engine(tiny_model_dir, min_pixels=BUDGET.min_pixels, max_pixels=BUDGET.max_pixels, read_in_pieces=True) as eng:
        hook = Timeline()
        eng.generate_hook = hook
        running = asyncio.create_task(answer(eng, ask("running", "a", QUESTION, 2000)))
        await asyncio.to_thread(hook.stepped.wait, 10)
        pictures = (noisy_picture((300, 200), seed=81), noisy_picture((120, 260), seed=82))
        turns = [SYSTEM, PromptTurn("user", "Compare these two pictures, please. " * 8, pictures)]
        _, stats = await answer(eng, ask("newcomer", "b", turns, 3))
        assert not running.done()
        await eng.cancel("running")
        await running
        counters = eng._runner.counters if eng._runner is not None else {}
        assert counters["vision_pieces"] > 4  # the pictures went through the tower in pieces
        # Between the newcomer's first chunk and its first token the running answer kept stepping.
        first = hook.events.index(("chunk", "newcomer"))
        steps = [e for e in hook.events[first:] if e == ("step", "running")]
        assert len(steps) >= 2 * len(eng.loaded.model.model.language_model.layers) - 1
        assert stats.output_tokens == 3
        expected = reference_logits(eng, turns, BUDGET)
        assert torch.allclose(hook.logits["newcomer"][0], expected, atol=1e-4), float((hook.logits["newcomer"][0] - expected).abs().max())
        # Its cache, filled layer by layer, serves its next steps as a prompt read whole does.
        await answer(eng, ask("whole", "c", turns, 3))  # nothing streams: read in one forward
        for mine, theirs in zip(hook.logits["newcomer"], hook.logits["whole"], strict=True):
            assert (mine - theirs).abs().max() < 1e-4
        # Every layer's keys and values (Qwen3-VL's deepstack features shape the later layers' ones at
        # the pictures' tokens) equal those of the prompt read whole.
        pieces, whole = eng._kv.take(("", "b")), eng._kv.take(("", "c"))
        assert pieces is not None and whole is not None and pieces.ids == whole.ids
        for mine_layer, their_layer in zip(pieces.cache.layers, whole.cache.layers, strict=True):
            assert torch.allclose(mine_layer.keys, their_layer.keys, atol=1e-5)
            assert torch.allclose(mine_layer.values, their_layer.values, atol=1e-5)


class HeldInPieces(Timeline):
    """Holds the running answer's first step after the newcomer's first prompt chunk began (in
    pieces, so work is left half done) until `release` is set; records who got a first token when."""

    def __init__(self) -> None:
        super().__init__()
        self.reached, self.release = threading.Event(), threading.Event()
        self.firsts: list[str] = []
        self.runner: Any = None
        self.half_read_when_follow_began: bool | None = None
        self.pieces_went_on = False
        self.pending_at_follow: Any = None

    def on_prefill_chunk(self, request_id: str, start: int, end: int) -> None:
        super().on_prefill_chunk(request_id, start, end)
        if request_id == "follow":  # is the newcomer's chunk begun in pieces still unfinished?
            pending = [r.pending for r in self.runner.reading if r.rid == "newcomer" and r.pending is not None]
            self.half_read_when_follow_began = bool(pending)
            self.pending_at_follow = pending[0] if pending else None

    def on_step(self, request_ids: Sequence[str]) -> None:
        super().on_step(request_ids)
        if {"follow", "running"} <= set(request_ids) and any(
            r.rid == "newcomer" and r.pending is not None and r.pending is self.pending_at_follow for r in self.runner.reading
        ):
            self.pieces_went_on = True  # the follow-up answers while the same piece of work goes on
        if not self.reached.is_set() and ("chunk", "newcomer") in self.events:
            self.reached.set()
            self.release.wait(30)

    def on_logits(self, request_ids: Sequence[str], logits: torch.Tensor) -> None:
        super().on_logits(request_ids, logits)
        self.firsts += [rid for rid in request_ids if rid not in self.firsts]


async def test_a_short_question_is_read_whole_before_the_rest_of_a_newcomer_begun_in_pieces(tiny_model_dir: Path) -> None:
    """A follow-up question arriving while a picture is read in pieces does not wait for the rest of
    it (its own read costs a few steps): it is read in one forward, first; the picture then goes on
    in pieces."""
    async with started_engine(tiny_model_dir, min_pixels=BUDGET.min_pixels, max_pixels=BUDGET.max_pixels, read_in_pieces=True) as eng:
        hook = HeldInPieces()
        hook.runner = eng._runner
        eng.generate_hook = hook
        running = asyncio.create_task(answer(eng, ask("running", "a", QUESTION, 2000)))
        await asyncio.to_thread(hook.stepped.wait, 10)
        pictures = (noisy_picture((300, 200), seed=83), noisy_picture((120, 260), seed=84))
        turns = [SYSTEM, PromptTurn("user", "Compare these two pictures, please. " * 8, pictures)]
        newcomer = asyncio.create_task(answer(eng, ask("newcomer", "b", turns, 2)))
        await asyncio.to_thread(hook.reached.wait, 30)  # its prompt is half read, in pieces
        follow = asyncio.create_task(answer(eng, ask("follow", "c", QUESTION, 2)))
        while not ((job := eng._jobs.get("follow")) and job.ready()):
            await asyncio.sleep(0.005)
        hook.release.set()
        await asyncio.gather(newcomer, follow)
        await eng.cancel("running")
        await running
        counters = eng._runner.counters if eng._runner is not None else {}
        assert counters["vision_pieces"] > 0
        assert hook.events.count(("chunk", "follow")) == 1  # whole, not in pieces
        assert hook.half_read_when_follow_began  # it did not wait for the newcomer's chunk to end
        assert hook.pieces_went_on  # and the picture, alone again, went on in pieces
        assert hook.firsts.index("follow") < hook.firsts.index("newcomer")
        for rid, their_turns in (("follow", QUESTION), ("newcomer", turns)):
            expected = reference_logits(eng, their_turns, BUDGET)
            assert torch.allclose(hook.logits[rid][0], expected, atol=1e-4), rid
