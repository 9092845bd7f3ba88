"""Benchmark 2: output tokens per second with 1, 4, 8, 16 concurrent sessions, batching on vs off.

    .venv/bin/python -m bench.throughput [--model DIR] [--sessions 1,4,8,16] [--tokens 64] [--repeat 1]

Each session sends one question at the same moment; every answer is `--tokens` long. "on" is the
default engine (batch_size 8, or --batch-size); "off" has batch_size=1. Throughput = all output
tokens / wall time from the first submission to the last answer (the best of --repeat runs, on and
off alternating). Target: at 8 sessions, on >= 3 x off.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.common import engine_running, machine, model_parser, quiet, request, resolve_model, run_request, table
from engine.interface import PromptTurn
from engine.local import LocalEngine

QUESTIONS = [
    "Where is the power button?",
    "What does this error mean? The disk is full.",
    "Read the serial number on the label.",
    "Turn the table into Markdown.",
]


async def burst(engine: LocalEngine, sessions: int, tokens: int, tag: str) -> tuple[float, int]:
    requests = [
        request(
            f"{tag}-{i}",
            f"{tag}-s{i}",
            [PromptTurn("system", "You are a helpful helpdesk assistant."), PromptTurn("user", f"{QUESTIONS[i % 4]} ({i})")],
            tokens,
        )
        for i in range(sessions)
    ]
    started = time.perf_counter()
    results = await asyncio.gather(*(run_request(engine, r) for r in requests))
    elapsed = time.perf_counter() - started
    return elapsed, sum(stats.output_tokens for _, stats in results)


async def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--sessions", default="1,4,8,16")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    quiet()
    model: Path = resolve_model(args)
    counts = [int(x) for x in args.sessions.split(",")]
    print(machine())
    print(f"model {model}; {args.tokens} output tokens per session; batch_size {args.batch_size} vs 1")
    rows = []
    async with (
        engine_running(model, args.device, batch_size=args.batch_size) as on,
        engine_running(model, args.device, batch_size=1) as off,
    ):
        for engine in (on, off):
            await burst(engine, 1, 4, "warm")
        for n in counts:
            # Alternating on and off keeps other load on the machine from favouring one side.
            on_runs, off_runs = [], []
            for r in range(args.repeat):
                on_runs.append(await burst(on, n, args.tokens, f"on{n}-{r}"))
                off_runs.append(await burst(off, n, args.tokens, f"off{n}-{r}"))
            on_s, on_tokens = min(on_runs)
            off_s, off_tokens = min(off_runs)
            on_tps, off_tps = on_tokens / on_s, off_tokens / off_s
            rows.append([n, on_tokens, on_s, on_tps, off_s, off_tps, on_tps / off_tps])
    print(table(["sessions", "tokens", "on s", "on tok/s", "off s", "off tok/s", "on/off"], rows))
    for row in rows:
        if row[0] == 8:
            print(f"8 sessions: on/off = {row[6]:.2f} (target >= 3): {'met' if row[6] >= 3 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
