"""Benchmark 4: bytes held per session in the KV store, and what happens at the budget.

    .venv/bin/python -m bench.kv_bytes [--model DIR] [--turns 6] [--sessions 4]

Part 1: one session, a picture in turn 1, then text turns; the store's bytes after each turn.
Part 2: a budget of about 2.5 sessions; `--sessions` sessions each send a picture, then each asks a
follow-up, most recent session first. Those still in the store prefill only the new tokens; the
least recently used were evicted, so their follow-up reads the conversation again but takes the
picture's features from the feature cache.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bench.common import (
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
from engine.local import LocalEngine

SYSTEM = PromptTurn("system", "You are a helpful helpdesk assistant.")


def per_token_bytes(engine: LocalEngine) -> int:
    config = engine.loaded.model.config.get_text_config()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * engine.loaded.dtype.itemsize


async def one_session(model: Path, args: argparse.Namespace) -> int:
    picture = prompt_image(photo_jpeg((args.width, args.height), seed=1))
    rows = []
    async with engine_running(model, args.device) as engine:
        expected = per_token_bytes(engine)
        turns = [SYSTEM]
        for k in range(1, args.turns + 1):
            turns.append(PromptTurn("user", f"Question {k} about the picture?", (picture,) if k == 1 else ()))
            text, stats = await run_request(engine, request(f"t{k}", "one", turns, args.answer_tokens))
            turns.append(PromptTurn("assistant", text))
            kv = engine.cache_stats().kv
            tokens = stats.prompt_tokens + stats.output_tokens - 1
            rows.append([k, tokens, kv.bytes, kv.bytes / 2**20, kv.bytes / tokens])
    print("Part 1: one session")
    print(table(["turn", "cached tokens", "store bytes", "MiB", "bytes/token"], rows))
    print(f"expected bytes/token = 2 x layers x kv_heads x head_dim x dtype = {expected}")
    return rows[1][2]


async def at_budget(model: Path, args: argparse.Namespace, session_bytes: int) -> None:
    budget = int(session_bytes * 2.5)
    pictures = [prompt_image(photo_jpeg((args.width, args.height), seed=10 + i)) for i in range(args.sessions)]
    rows = []
    async with engine_running(model, args.device, kv_cache_bytes=budget) as engine:
        hook = engine.generate_hook
        histories = {}
        for rnd in (1, 2):
            # Round 2 in reverse order: the most recent sessions still hold their cache, the oldest do not.
            order = range(args.sessions) if rnd == 1 else reversed(range(args.sessions))
            for i in order:
                session = f"s{i}"
                turns = histories.setdefault(session, [SYSTEM])
                turns.append(PromptTurn("user", f"Round {rnd}: what is this?", (pictures[i],) if rnd == 1 else ()))
                rid = f"{session}-r{rnd}"
                text, stats = await run_request(engine, request(rid, session, turns, args.answer_tokens))
                turns.append(PromptTurn("assistant", text))
                seen = hook.prefill[rid]  # type: ignore[union-attr]
                kv = engine.cache_stats().kv
                rows.append(
                    [rid, stats.prompt_tokens, seen["cached_tokens"], seen["feature_hits"], stats.time_to_first_token_s,
                     kv.entries, kv.bytes, kv.evictions, ",".join(engine._kv.sessions())]
                )
                assert kv.bytes <= budget
    print(f"Part 2: budget {budget} bytes ({budget / 2**20:.1f} MiB, about 2.5 sessions), {args.sessions} sessions")
    print(table(["request", "prompt", "reused", "feature hits", "TTFT s", "entries", "bytes", "evictions", "held (LRU first)"], rows))


async def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--answer-tokens", type=int, default=16)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    model = model_to_run(args)
    print(f"model {model}; {args.width}x{args.height} pictures; {args.answer_tokens} tokens per answer")
    session_bytes = await one_session(model, args)
    await at_budget(model, args, session_bytes)


if __name__ == "__main__":
    asyncio.run(main())
