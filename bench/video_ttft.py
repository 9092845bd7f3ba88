"""Benchmark: time to first token for a 10-second 720p screen recording vs one picture, and a follow-up's
(cached) vs the first question's.

    .venv/bin/python -m bench.video_ttft --threads 1 [--arch qwen3_vl] [--repeats 3]

The clip is H.264, 1280x720 at 30 fps (a window with a moving cursor and changing text, built once
with PyAV and kept in the bench cache); the picture is a 1280x720 PNG screenshot of the same scene.
The engine is the default one, with the feature cache off so that each repeat reads the clip again
(the prefix cache stays on: the follow-up reuses the session's KV). TTFT is the engine's own
(`GenerationStats.time_to_first_token_s`: from submission, decoding and sampling the clip included).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import time
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw

from bench.common import CACHE_DIR, engine_running, median, model_parser, model_to_run, request, run_request, table
from engine.interface import PromptImage, PromptTurn, PromptVideo
from engine.videos import DEFAULT_VIDEO_LIMITS, sample_video

SIZE = (1280, 720)


def scene(index: int, rate: int) -> Image.Image:
    """A settings window: a cursor moving to a button, a dialog from second 4 on, a clock in the corner."""
    image = Image.new("RGB", SIZE, (236, 238, 242))
    draw = ImageDraw.Draw(image)
    draw.rectangle((80, 60, 1200, 660), fill=(255, 255, 255), outline=(150, 150, 160))
    for row in range(12):
        draw.text((120, 100 + row * 40), f"Setting {row + 1}: value {(row * 37) % 100}", fill=(30, 30, 30))
    draw.rectangle((900, 560, 1120, 620), fill=(40, 110, 220))
    draw.text((960, 580), "Save", fill=(255, 255, 255))
    seconds = index / rate
    draw.text((1080, 70), f"0:{int(seconds):02d}.{int(seconds * 10) % 10}", fill=(90, 90, 90))
    x, y = 200 + int(seconds * 80), 150 + int(seconds * 45)
    draw.polygon([(x, y), (x + 14, y + 34), (x + 22, y + 20), (x + 36, y + 16)], fill=(0, 0, 0))
    if seconds >= 4:
        draw.rectangle((380, 250, 900, 430), fill=(250, 235, 235), outline=(200, 60, 60), width=3)
        draw.text((420, 300), "Error 0x80070005: access denied while saving.", fill=(160, 20, 20))
    return image


def recording(seconds: int = 10, rate: int = 30) -> bytes:
    path = CACHE_DIR / f"recording-{SIZE[0]}x{SIZE[1]}-{seconds}s.mp4"
    if path.exists():
        return path.read_bytes()
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as muxer:
        stream = muxer.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for index in range(seconds * rate):
            frame = av.VideoFrame.from_ndarray(np.asarray(scene(index, rate)), format="rgb24")
            muxer.mux(stream.encode(frame))
        muxer.mux(stream.encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return out.getvalue()


def screenshot() -> bytes:
    out = io.BytesIO()
    scene(5 * 30, 30).save(out, format="PNG")
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def measure(args: argparse.Namespace, model: Any, clip: bytes, picture: bytes) -> dict[str, list[dict[str, float]]]:
    rows: dict[str, list[dict[str, float]]] = {"picture": [], "clip": [], "follow-up": []}
    system = PromptTurn("system", "You are a helpful helpdesk assistant.")
    async with engine_running(model, args.device, feature_cache_bytes=0) as engine:
        await run_request(engine, request("warm", "warm", [PromptTurn("user", "Hello")], 2))
        for r in range(args.repeats):
            # A byte appended to each repeat's files makes a new hash: nothing is reused across repeats.
            pic = PromptImage(sha(picture + bytes([r])), picture)
            turns = [system, PromptTurn("user", "What does the error say?", (pic,))]
            _, stats = await run_request(engine, request(f"p{r}", f"p{r}", turns, args.answer_tokens))
            rows["picture"].append({"ttft": stats.time_to_first_token_s or 0.0, "prompt": stats.prompt_tokens})
            video = PromptVideo(sha(clip + bytes([r])), clip)
            turns = [system, PromptTurn("user", "What happens when I click Save?", videos=(video,))]
            text, stats = await run_request(engine, request(f"v{r}", f"v{r}", turns, args.answer_tokens))
            rows["clip"].append({"ttft": stats.time_to_first_token_s or 0.0, "prompt": stats.prompt_tokens})
            turns += [PromptTurn("assistant", text), PromptTurn("user", "At what second does the dialog appear?")]
            _, stats = await run_request(engine, request(f"f{r}", f"v{r}", turns, args.answer_tokens))
            cached = engine.generate_hook.prefill[f"f{r}"]["cached_tokens"]  # type: ignore[union-attr]
            rows["follow-up"].append({"ttft": stats.time_to_first_token_s or 0.0, "prompt": stats.prompt_tokens, "cached": cached})
    return rows


async def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--answer-tokens", type=int, default=8)
    args = parser.parse_args()
    model = model_to_run(args)
    clip, picture = recording(), screenshot()
    began = time.perf_counter()
    sampled = sample_video(clip, DEFAULT_VIDEO_LIMITS)
    decode_s = time.perf_counter() - began
    print(
        f"model {model}; clip {len(clip) / 1024:.0f} KB H.264 {SIZE[0]}x{SIZE[1]} 30 fps, {sampled.info.duration_s:.1f} s: "
        f"{len(sampled.frames)} frames sampled in {decode_s:.2f} s; picture {len(picture) / 1024:.0f} KB PNG"
    )
    rows = await measure(args, model, clip, picture)
    out = []
    for name, values in rows.items():
        ttfts = [v["ttft"] for v in values]
        cached = f"{int(values[0]['cached'])}" if "cached" in values[0] else "0"
        out.append([name, int(values[0]["prompt"]), cached, median(ttfts), min(ttfts), max(ttfts)])
    print(table(["question", "prompt tokens", "reused", "TTFT median s", "min s", "max s"], out))
    clip_s, picture_s, follow_s = (median([v["ttft"] for v in rows[k]]) for k in ("clip", "picture", "follow-up"))
    print(f"clip / picture = {clip_s / picture_s:.2f}; follow-up / first question on the clip = {follow_s / clip_s:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
