"""Benchmark: weight bytes and time per decode step, full precision vs int8 vs nf4 (bitsandbytes).

    .venv/bin/python -m bench.quant --threads 1 [--model DIR] [--rounds 3] [--answer-tokens 32]

Each round loads nothing new: the three engines stay loaded and each answers the same text
question (every answer runs to `--answer-tokens`, so each does the same number of steps), in
rotating order so that a neighbour's load falls on all three alike. Time per decode step is the
answer's time after its first token divided by the steps after it; weight bytes are
`model.get_memory_footprint()` (parameters and buffers as stored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from bench.common import (
    engine_running,
    machine,
    median,
    model_parser,
    quiet,
    request,
    resolve_model,
    run_request,
    table,
)
from engine.interface import PromptTurn

MODES = ("none", "int8", "nf4")


async def main(args: argparse.Namespace) -> None:
    model = resolve_model(args)
    turns = [PromptTurn("system", "You are a helpful helpdesk assistant."), PromptTurn("user", "Where is the power button?")]
    async with contextlib.AsyncExitStack() as stack:
        engines = {
            mode: await stack.enter_async_context(
                engine_running(model, args.device, quantization=mode, prefix_cache=False, batch_size=1)
            )
            for mode in MODES
        }
        steps: dict[str, list[float]] = {mode: [] for mode in MODES}
        for rnd in range(args.rounds + 1):  # round 0 warms up
            order = MODES[rnd % 3 :] + MODES[: rnd % 3]
            for mode in order:
                _, stats = await run_request(engines[mode], request(f"{mode}-{rnd}", f"{mode}-{rnd}", turns, args.answer_tokens))
                assert stats.time_to_first_token_s is not None and stats.output_tokens == args.answer_tokens
                if rnd:
                    per_step = (stats.total_s - stats.time_to_first_token_s) / (stats.output_tokens - 1)
                    steps[mode].append(per_step * 1000)
        base = engines["none"].loaded.model.get_memory_footprint()
        rows = []
        for mode in MODES:
            weights = engines[mode].loaded.model.get_memory_footprint()
            rows.append([
                mode, engines[mode].health().quantization, weights, weights / 2**20, weights / base, median(steps[mode]),
            ])
    print(machine())
    print(f"model {model}, {args.rounds} rounds, {args.answer_tokens} tokens per answer, device {args.device}")
    print(table(["mode", "quantization", "weight bytes", "MiB", "vs none", "ms / decode step (median)"], rows))


if __name__ == "__main__":
    quiet()
    parser = model_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--answer-tokens", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
