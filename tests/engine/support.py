"""Helpers for the engine's tests: started engines, noisy pictures, recording and holding hooks, a full-recompute reference."""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from PIL import Image

from engine.decode import ImageBudget, build_inputs
from engine.hooks import DecodeHook
from engine.interface import (
    GenerationLimits,
    GenerationRequest,
    GenerationStats,
    PromptImage,
    PromptTurn,
    TextPiece,
)
from engine.local import LocalEngine, LocalEngineOptions
from engine.remote import RemoteEngine, RemoteEngineOptions

SYSTEM = PromptTurn("system", "You are helpful.")


class Startable(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


E = TypeVar("E", bound=Startable)


@asynccontextmanager
async def running(engine: E) -> AsyncIterator[E]:
    """The engine, started; closed when the block ends (also when start fails half-way, so its threads
    and sessions do not outlive the test)."""
    try:
        await engine.start()
        yield engine
    finally:
        await engine.close()


def started_engine(model_path: Path, **options: Any) -> AbstractAsyncContextManager[LocalEngine]:
    """A LocalEngine on model_path with these LocalEngineOptions, running for the block."""
    return running(LocalEngine(LocalEngineOptions(model_path=model_path, **options)))


def started_remote(base_url: str, **options: Any) -> AbstractAsyncContextManager[RemoteEngine]:
    """A RemoteEngine on base_url with these RemoteEngineOptions, running for the block."""
    return running(RemoteEngine(RemoteEngineOptions(base_url=base_url, **options)))


def noisy_picture(size: tuple[int, int], seed: int) -> PromptImage:
    """A picture whose patches differ (a solid colour would give every visual token the same features)."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    data = out.getvalue()
    return PromptImage(hashlib.sha256(data).hexdigest(), data)


def ask(
    rid: str, session: str, turns: Sequence[PromptTurn], max_new_tokens: int = 5, timeout_s: float = 120
) -> GenerationRequest:
    return GenerationRequest(rid, session, tuple(turns), GenerationLimits(max_new_tokens=max_new_tokens, timeout_s=timeout_s))


class Recorder(DecodeHook):
    """Records each request's prefill inputs, the logits of every token it chose, and batch sizes."""

    def __init__(self, ignore_eos: bool = True, delay: float = 0.0) -> None:
        self.ignore_eos = ignore_eos
        self.delay = delay
        self.prefill: dict[str, dict[str, Any]] = {}
        self.logits: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.batch_sizes: list[int] = []
        self.stepped = threading.Event()
        self.cancel_at: dict[str, tuple[int, Any]] = {}  # rid -> (token count, callable run at that count)

    def on_prefill(self, request_id: str, inputs: Any) -> None:
        self.prefill[request_id] = dict(inputs)

    def on_step(self, request_ids: Sequence[str]) -> None:
        self.batch_sizes.append(len(request_ids))
        self.stepped.set()
        if self.delay:
            time.sleep(self.delay)

    def on_logits(self, request_ids: Sequence[str], logits: torch.Tensor) -> None:
        for index, rid in enumerate(request_ids):
            self.logits[rid].append(logits[index].clone())
            action = self.cancel_at.get(rid)
            if action is not None and len(self.logits[rid]) == action[0]:
                action[1]()


class RealisticScores(Recorder):
    """Scales next-token scores by 1e4 from each request's second token on.

    A random tiny checkpoint's scores are near 0, a trained model's are tens, and dividing those by a
    temperature of 1e-38 overflows (issue 11, finding 1). Leaving each request's first token alone
    lets a hostile request join the batch before its scores overflow, as in the attack. Scaling keeps
    the argmax, so greedy answers are unchanged."""

    def on_logits(self, request_ids: Sequence[str], logits: torch.Tensor) -> None:
        for row, rid in enumerate(request_ids):
            if self.logits.get(rid):
                logits[row].mul_(1e4)
        super().on_logits(request_ids, logits)


class HeldAt(Recorder):
    """Holds the decoding loop at its `step`-th step until `release` is set (at step 1: so that the others join it)."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step
        self.reached, self.release = threading.Event(), threading.Event()

    def on_step(self, request_ids: Sequence[str]) -> None:
        super().on_step(request_ids)
        if len(self.batch_sizes) == self.step:
            self.reached.set()
            self.release.wait(30)


def recorder(engine: LocalEngine) -> Recorder:
    hook = engine.generate_hook
    assert isinstance(hook, Recorder)
    return hook


async def answer(engine: LocalEngine, request: GenerationRequest) -> tuple[str, GenerationStats]:
    text = []
    stats = None
    async for event in engine.generate(request):
        if isinstance(event, TextPiece):
            text.append(event.text)
        elif isinstance(event, GenerationStats):
            stats = event
    assert stats is not None
    return "".join(text), stats


def reference_logits(engine: LocalEngine, turns: Sequence[PromptTurn], budget: ImageBudget) -> torch.Tensor:
    """Next-token logits of a full recompute: the processor and one plain forward, no cache."""
    loaded = engine.loaded
    inputs = build_inputs(loaded, turns, budget)
    with torch.inference_mode():
        loaded.model.model.rope_deltas = None
        out = loaded.model(**inputs, use_cache=False)
    return out.logits[0, -1].float()
