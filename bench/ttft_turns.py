"""Benchmark 1: time to first token of turn k (k = 1..8, one picture in turn 1), prefix reuse on vs off.

    .venv/bin/python -m bench.ttft_turns [--model DIR] [--turns 8] [--answer-tokens 24]

"on" is the default engine (per-session KV store and feature cache); "off" has prefix_cache=False
and feature_cache_bytes=0, so every turn reads the whole conversation and the picture again.
Target: at turn 5, on <= 0.2 x off.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench.common import (
    conversation_turn,
    engine_running,
    model_parser,
    model_to_run,
    photo_jpeg,
    prompt_image,
    request,
    run_request,
    table,
)
from engine.interface import PromptTurn

QUESTIONS = [
    "What does this error mean? The dialog says the disk is full.",
    "Where is the serial number printed?",
    "Turn the table into Markdown with a header row.",
    "Which button should I press next?",
    "Read the text at the bottom left and keep the line breaks.",
    "Is the invoice total the same as the order total?",
    "Describe the chart: what happens between January and June?",
    "Summarise everything in two sentences.",
]


async def conversations(args: argparse.Namespace, model: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The same conversation on two engines (reuse on, off), turn by turn, so load from other
    processes on a shared machine falls on both alike."""
    picture = prompt_image(photo_jpeg((args.width, args.height)))
    results: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    async with (
        engine_running(model, args.device) as on,
        engine_running(model, args.device, prefix_cache=False, feature_cache_bytes=0) as off,
    ):
        engines = (on, off)
        histories: list[list[PromptTurn]] = []
        for engine in engines:
            # One throw-away request so that lazy initialisation is not billed to turn 1.
            await run_request(engine, request("warm", "warm", [PromptTurn("user", "Hello")], 2))
            histories.append([PromptTurn("system", "You are a helpful helpdesk assistant.")])
        for k in range(1, args.turns + 1):
            images = (picture,) if k == 1 else ()
            question = PromptTurn("user", QUESTIONS[(k - 1) % len(QUESTIONS)], images)
            for engine, turns, rows in zip(engines, histories, results, strict=True):
                turns.append(question)
                rows.append(await conversation_turn(engine, f"t{k}", "bench", turns, args.answer_tokens))
    return results


async def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--answer-tokens", type=int, default=24)
    parser.add_argument("--width", type=int, default=1280, help="picture size (within the default budget)")
    parser.add_argument("--height", type=int, default=960)
    args = parser.parse_args()
    model = model_to_run(args)
    print(f"model {model}; picture {args.width}x{args.height} JPEG in turn 1; {args.answer_tokens} tokens per answer")
    on, off = await conversations(args, model)
    rows = []
    for k, (a, b) in enumerate(zip(on, off, strict=True), start=1):
        rows.append([k, a["prompt"], a["cached"], a["ttft"], b["ttft"], a["ttft"] / b["ttft"]])
    print(table(["turn", "prompt tokens", "reused (on)", "TTFT on s", "TTFT off s", "on/off"], rows))
    if len(rows) >= 5:
        ratio = rows[4][5]
        print(f"turn 5: on/off = {ratio:.3f} (target <= 0.2): {'met' if ratio <= 0.2 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
