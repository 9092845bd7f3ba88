"""Benchmark: one user, one new picture: where the engine's time to first token goes, against bare transformers.

    .venv/bin/python -m bench.first_picture --threads 1 [--model DIR] [--rounds 8]

In one process, alternating round by round (so the neighbours' load falls on both alike), each
round with a picture never seen before (`--width` x `--height` JPEG, one question):

- engine: `LocalEngine.generate`, time from the call to the first text piece, split into
  preparation and queue (until the worker begins), the worker's forward (vision tower + prompt), and
  the first token's way back to the caller;
- bare: what `transformers serve` does per request: the processor (decode, resize, normalise) and
  `model.generate(max_new_tokens=1)`.

Reported: medians per part, and engine / bare.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from bench.common import engine_running, model_parser, model_to_run, photo_jpeg, prompt_image, request, table
from engine.decode import ImageBudget, build_inputs
from engine.hooks import DecodeHook
from engine.interface import GenerationStats, PromptTurn, TextPiece

QUESTION = "Where is the serial number printed?"


class Marks(DecodeHook):
    ignore_eos = True

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def on_prefill(self, request_id: str, inputs: Mapping[str, Any]) -> None:
        self.at.setdefault("worker", time.perf_counter())

    def on_step(self, request_ids: Sequence[str]) -> None:
        self.at.setdefault("first_token", time.perf_counter())


async def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    args = parser.parse_args()
    model = model_to_run(args)
    parts: dict[str, list[float]] = {k: [] for k in ("prepare", "worker", "back", "engine", "processor", "generate", "bare")}
    async with engine_running(model, args.device) as engine:
        loaded = engine.loaded
        budget = ImageBudget(engine._options.min_pixels, engine._options.max_pixels, engine._options.jpeg_draft)
        for round_ in range(args.rounds + 1):  # round 0 warms both up
            picture = prompt_image(photo_jpeg((args.width, args.height), seed=3000 + round_, noise=0.05))
            marks = Marks()
            engine.generate_hook = marks
            began = time.perf_counter()
            first = None
            async for event in engine.generate(request(f"r{round_}", f"s{round_}", [PromptTurn("user", QUESTION, (picture,))], 2)):
                if isinstance(event, TextPiece) and first is None:
                    first = time.perf_counter()
                elif isinstance(event, GenerationStats):
                    break
            assert first is not None
            other = prompt_image(photo_jpeg((args.width, args.height), seed=4000 + round_, noise=0.05))
            bare_began = time.perf_counter()
            inputs = build_inputs(loaded, [PromptTurn("user", QUESTION, (other,))], budget)
            processed = time.perf_counter()
            with torch.inference_mode():
                loaded.model.model.rope_deltas = None
                loaded.model.generate(**inputs, max_new_tokens=1, do_sample=False)
            bare_end = time.perf_counter()
            if round_ == 0:
                continue
            parts["prepare"].append(marks.at["worker"] - began)
            parts["worker"].append(marks.at["first_token"] - marks.at["worker"])
            parts["back"].append(first - marks.at["first_token"])
            parts["engine"].append(first - began)
            parts["processor"].append(processed - bare_began)
            parts["generate"].append(bare_end - processed)
            parts["bare"].append(bare_end - bare_began)
            print(f"round {round_}: engine {first - began:.3f} s, bare {bare_end - bare_began:.3f} s", flush=True)
    med = {k: statistics.median(v) * 1000 for k, v in parts.items()}
    ratios = [e / b for e, b in zip(parts["engine"], parts["bare"], strict=True)]
    rows = [
        ["preparation + queue (engine) / processor (bare)", med["prepare"], med["processor"], med["prepare"] / med["processor"]],
        ["worker: vision tower + prompt forward, first token chosen / generate(max_new_tokens=1)", med["worker"],
         med["generate"], med["worker"] / med["generate"]],
        ["first token to the caller", med["back"], "", ""],
        ["time to first token", med["engine"], med["bare"], med["engine"] / med["bare"]],
    ]
    print(table(["part (median of rounds, ms)", "engine", "bare transformers", "engine / bare"], rows))
    print(f"engine / bare per round: median {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}")


if __name__ == "__main__":
    asyncio.run(main())
