"""What the benchmarks share: the model to run, pictures, an engine per configuration, tables."""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import random
import statistics
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter

from engine.hooks import DecodeHook
from engine.interface import GenerationLimits, GenerationRequest, GenerationStats, PromptImage, PromptTurn, TextPiece
from engine.local import LocalEngine, LocalEngineOptions

__all__ = [
    "FixedLength",
    "add_model_args",
    "conversation_turn",
    "engine_running",
    "machine",
    "median",
    "model_parser",
    "model_to_run",
    "quiet",
    "request",
    "photo_jpeg",
    "prompt_image",
    "resolve_model",
    "run_request",
    "table",
]

CACHE_DIR = Path(os.environ.get("VLMBOT_BENCH_CACHE", Path.home() / ".cache" / "vlmbot-bench"))


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="checkpoint directory (default: a ~60 M bench-size random model)")
    parser.add_argument("--arch", choices=["qwen2_5_vl", "qwen3_vl"], default="qwen2_5_vl", help="for the built model")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's choice). On a CPU shared with other work, 1 avoids the "
        "stalls of OpenMP threads that wait for each other while the OS runs something else.",
    )


def model_parser(description: str | None) -> argparse.ArgumentParser:
    """The command line of a benchmark that runs a model: its module docstring as help, and the model options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    return parser


def model_to_run(args: argparse.Namespace) -> Path:
    """Quiet logs, the checkpoint to run (built on first use), then the machine line every result starts with."""
    quiet()
    model = resolve_model(args)
    print(machine())
    return model


def resolve_model(args: argparse.Namespace) -> Path:
    """The given checkpoint, or the bench-size random checkpoint (built once, then reused)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    if args.model is not None:
        return args.model
    out = CACHE_DIR / f"bench-{args.arch}-printable"  # earlier bench checkpoints wrote invalid UTF-8
    if not (out / "config.json").exists():
        from engine.tiny import write_tiny_checkpoint

        print(f"building a bench-size {args.arch} checkpoint in {out} ...", flush=True)
        write_tiny_checkpoint(out, args.arch, "bench")
    return out


def machine() -> str:
    import torch
    import transformers

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"nproc={os.cpu_count()}, CPU {cpu}, {gpu}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, torch threads {torch.get_num_threads()}"
    )


def photo_jpeg(size: tuple[int, int] = (4000, 3000), seed: int = 0, quality: int = 90, noise: float = 0.15) -> bytes:
    """A photo-like JPEG: smooth shapes plus sensor-like noise (pure noise would be an unusual JPEG).

    noise 0.15 gives about 2.5 MB at 4000x3000 (a grainy phone photo), 0.03 about 1 MB (a clean one).
    """
    rng = random.Random(seed)
    small = Image.frombytes("RGB", (40, 30), bytes(rng.randrange(256) for _ in range(40 * 30 * 3)))
    image = small.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(3))
    grain = Image.effect_noise(size, 24).convert("RGB")
    image = Image.blend(image, grain, noise)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def prompt_image(data: bytes) -> PromptImage:
    import hashlib

    return PromptImage(hashlib.sha256(data).hexdigest(), data)


class FixedLength(DecodeHook):
    """Every answer runs to max_new_tokens, so on and off runs do the same work."""

    ignore_eos = True

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.prefill: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def on_prefill(self, request_id: str, inputs: Any) -> None:
        self.prefill[request_id] = {k: inputs[k] for k in ("cached_tokens", "feature_hits")} | {
            "prompt_tokens": int(inputs["input_ids"].shape[1])
        }

    def on_step(self, request_ids: Sequence[str]) -> None:
        self.batch_sizes.append(len(request_ids))


@asynccontextmanager
async def engine_running(model: Path, device: str = "auto", **options: Any) -> AsyncIterator[LocalEngine]:
    engine = LocalEngine(replace(LocalEngineOptions(model_path=model, device=device, queue_size=64), **options))
    await engine.start()
    engine.generate_hook = FixedLength()
    try:
        yield engine
    finally:
        await engine.close()


async def run_request(engine: LocalEngine, request: GenerationRequest) -> tuple[str, GenerationStats]:
    text: list[str] = []
    async for event in engine.generate(request):
        if isinstance(event, TextPiece):
            text.append(event.text)
        elif isinstance(event, GenerationStats):
            return "".join(text), event
    raise RuntimeError("stream ended without stats")


async def conversation_turn(
    engine: LocalEngine, rid: str, session: str, turns: list[PromptTurn], max_new_tokens: int
) -> dict[str, Any]:
    """One turn on an `engine_running` engine: its answer is appended to `turns`; returns the turn's time to
    first token, prompt tokens and the prompt tokens reused from the session's KV cache."""
    text, stats = await run_request(engine, request(rid, session, turns, max_new_tokens))
    hook = engine.generate_hook
    assert isinstance(hook, FixedLength)
    turns.append(PromptTurn("assistant", text))
    return {"ttft": stats.time_to_first_token_s, "prompt": stats.prompt_tokens, "cached": hook.prefill[rid]["cached_tokens"]}


def request(rid: str, session: str, turns: Sequence[PromptTurn], max_new_tokens: int) -> GenerationRequest:
    return GenerationRequest(rid, session, tuple(turns), GenerationLimits(max_new_tokens=max_new_tokens, timeout_s=3600))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable in a terminal and pasteable into RESULTS.md)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def quiet() -> None:
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
