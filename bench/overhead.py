"""Benchmark 5: the engine's end-to-end time for one request vs a bare `model.generate`.

    .venv/bin/python -m bench.overhead [--model DIR] [--tokens 64] [--repeat 7]

Same model object, same prompt (a picture and a question), same number of new tokens, greedy.
"bare" is the processor plus `model.generate` with no streamer; "engine" is submit -> queue ->
decoding loop -> streamed pieces -> final stats, with the KV store and feature cache off so every
repetition does the same work. Runs alternate; the best of --repeat of each is compared (on a shared
machine the best run is the one least disturbed by other work). Target: engine <= 1.05 x bare.
"""

from __future__ import annotations

import asyncio
import time

import torch

from bench.common import (
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
from engine.decode import ImageBudget, build_inputs
from engine.interface import PromptTurn
from engine.local import LocalEngine


def bare(engine: LocalEngine, turns: list[PromptTurn], tokens: int) -> tuple[float, float]:
    """(processor + generate, generate alone) in seconds."""
    loaded = engine.loaded
    options = engine._options
    started = time.perf_counter()
    inputs = build_inputs(loaded, turns, ImageBudget(options.min_pixels, options.max_pixels, options.jpeg_draft))
    built = time.perf_counter()
    with torch.inference_mode():
        out = loaded.model.generate(
            **inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
            pad_token_id=loaded.processor.tokenizer.pad_token_id,
        )
    done = time.perf_counter()
    assert out.shape[1] - inputs["input_ids"].shape[1] == tokens
    return done - started, done - built


async def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    model = model_to_run(args)
    picture = prompt_image(photo_jpeg((640, 480)))
    turns = [PromptTurn("system", "You are a helpful helpdesk assistant."), PromptTurn("user", "What is in the picture?", (picture,))]
    engine_s, bare_s, generate_s = [], [], []
    async with engine_running(model, args.device, prefix_cache=False, feature_cache_bytes=0) as engine:
        await run_request(engine, request("warm", "warm", turns, 2))
        await asyncio.to_thread(bare, engine, turns, 2)
        for i in range(args.repeat):
            started = time.perf_counter()
            _, stats = await run_request(engine, request(f"r{i}", f"s{i}", turns, args.tokens))
            engine_s.append(time.perf_counter() - started)
            assert stats.output_tokens == args.tokens
            whole, gen = await asyncio.to_thread(bare, engine, turns, args.tokens)
            bare_s.append(whole)
            generate_s.append(gen)
        prompt_tokens = stats.prompt_tokens
    print(f"model {model}; prompt {prompt_tokens} tokens (640x480 picture); {args.tokens} new tokens; {args.repeat} runs each")
    rows = []
    for label, pick in (("best", min), ("median", median)):
        e, b, g = pick(engine_s), pick(bare_s), pick(generate_s)
        rows.append([label, e, b, g, e / b, e / g])
    print(
        table(
            ["", "engine s", "processor + generate s", "generate alone s", "engine / (processor+generate)", "engine / generate"],
            rows,
        )
    )
    e, b = min(engine_s), min(bare_s)
    print(f"engine / bare = {e / b:.3f} (target <= 1.05): {'met' if e / b <= 1.05 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
