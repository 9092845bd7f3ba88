"""Benchmark: does a running answer keep streaming while a newcomer's picture is read?

    .venv/bin/python -m bench.stream_gaps --threads 1 [--model DIR] [--history-words 1500]

One answer runs (a short question, `--answer-tokens` long); once it has streamed 16 tokens a second
request arrives with a new picture (`--width` x `--height` JPEG) after a long history
(`--history-words` words, so the picture is read at long context). The gaps between two tokens of
the running answer are taken on the engine's worker (the time between the decode steps that feed
it). Reported: its median gap, and its longest gap while the newcomer is read (from its arrival to
its first token) plus half a second (its join and first steps in the batch); and the longest gap
strictly until its first token. Target: longest <= 2 x median.

Engines one after the other (--modes): "pieces" (this engine: while answers run, the newcomer's
pictures go through the vision tower and its prompt chunks through the decoder in pieces of about
one decode step, `engine.read_pieces`), "adaptive" (`read_in_pieces` off: chunks sized by time to
about four decode steps, the vision tower in one piece) and "fixed" (pieces off and `CHUNK_STEPS` =
1e9: every chunk is `prefill_chunk_tokens`, as before the adaptive budget).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import engine.batch as batch_module
from bench.common import (
    FixedLength,
    engine_running,
    median,
    model_parser,
    model_to_run,
    photo_jpeg,
    prompt_image,
    request,
    run_request,
    table,
)
from engine.interface import PromptTurn

SENTENCE = "the printer on the third floor shows a paper jam error although the tray is empty and the door is closed"


class StepClock(FixedLength):
    """Times the decode steps that include the running answer, and the newcomer's chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[float] = []
        self.chunks: list[tuple[int, int]] = []
        self.started = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def on_step(self, request_ids: Sequence[str]) -> None:
        super().on_step(request_ids)
        if "running" in request_ids:
            self.steps.append(time.perf_counter())
            if len(self.steps) == 16 and self.loop is not None:
                self.loop.call_soon_threadsafe(self.started.set)

    def on_prefill_chunk(self, request_id: str, start: int, end: int) -> None:
        if request_id == "newcomer":
            self.chunks.append((start, end))


async def one_run(args: argparse.Namespace, model: Path, mode: str) -> dict[str, Any]:
    saved = batch_module.CHUNK_STEPS
    if mode == "fixed":
        batch_module.CHUNK_STEPS = 1e9  # every chunk is prefill_chunk_tokens
    try:
        async with engine_running(
            model, args.device, prefill_chunk_tokens=args.chunk_tokens, read_in_pieces=mode == "pieces"
        ) as engine:
            await run_request(
                engine, request("warm", "warm", [PromptTurn("user", "Hello")], 2)
            )
            # Made before the running answer starts: making it is the client's work, and Pillow's
            # filters hold the GIL, which stalled the engine's worker in the same process.
            picture = prompt_image(photo_jpeg((args.width, args.height), seed=7))
            clock = StepClock()
            clock.loop = asyncio.get_running_loop()
            engine.generate_hook = clock
            question = [
                PromptTurn("system", "You are a helpful helpdesk assistant."),
                PromptTurn("user", "Where is the power button?"),
            ]
            running = asyncio.create_task(
                run_request(
                    engine, request("running", "a", question, args.answer_tokens)
                )
            )
            await clock.started.wait()
            words = SENTENCE.split()
            history = " ".join(words[i % len(words)] for i in range(args.history_words))
            turns = [
                PromptTurn("system", "You are a helpful helpdesk assistant."),
                *([PromptTurn("user", history)] if history else []),
                PromptTurn("assistant", "Please send a photo of the display."),
                PromptTurn("user", "Here it is.", (picture,)),
            ]
            arrived = time.perf_counter()
            _, stats = await run_request(engine, request("newcomer", "b", turns, 4))
            assert stats.time_to_first_token_s is not None
            first_token = arrived + stats.time_to_first_token_s
            await running
    finally:
        batch_module.CHUNK_STEPS = saved
    steps = clock.steps
    gaps = [(b - a, b) for a, b in itertools.pairwise(steps)]
    during = [gap for gap, at in gaps if arrived <= at <= first_token + 0.5]
    reading = [gap for gap, at in gaps if arrived <= at <= first_token]  # strictly while it is read
    usual = [gap for gap, at in gaps if not (arrived <= at <= first_token + 0.5)]
    return {
        "mode": mode,
        "prompt": stats.prompt_tokens,
        "ttft": stats.time_to_first_token_s,
        "chunks": len(clock.chunks),
        "median": median([gap for gap, _ in gaps]),
        "median_usual": median(usual) if usual else math.nan,
        "max_during": max(during) if during else math.nan,
        "max_reading": max(reading) if reading else math.nan,
    }


async def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--history-words", type=int, default=1500)
    parser.add_argument("--answer-tokens", type=int, default=400)
    parser.add_argument(
        "--chunk-tokens", type=int, default=512, help="prefill_chunk_tokens"
    )
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--modes", default="pieces,adaptive,fixed")
    args = parser.parse_args()
    model = model_to_run(args)
    print(
        f"model {model}; running answer {args.answer_tokens} tokens; newcomer: {args.history_words} words of "
        f"history + a {args.width}x{args.height} JPEG; prefill_chunk_tokens {args.chunk_tokens}"
    )
    rows = []
    for mode in args.modes.split(","):
        r = await one_run(args, model, mode)
        ratio = r["max_during"] / r["median"]
        rows.append(
            [
                mode,
                r["prompt"],
                r["chunks"],
                r["ttft"],
                r["median"] * 1000,
                r["median_usual"] * 1000,
                r["max_during"] * 1000,
                ratio,
                r["max_reading"] * 1000,
                r["max_reading"] / r["median"],
            ]
        )
        print(
            f"{mode}: longest gap while the newcomer is read / median gap = {ratio:.2f} (target <= 2): {'met' if ratio <= 2 else 'MISSED'}",
            flush=True,
        )
    headers = [
        "mode",
        "newcomer prompt tokens",
        "its chunks",
        "its TTFT s",
        "median gap ms",
        "median gap outside ms",
        "longest gap while read ms",
        "longest / median",
        "longest until its first token ms",
        "that / median",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    asyncio.run(main())
