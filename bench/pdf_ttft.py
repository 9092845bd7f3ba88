"""Time to first token for an 8-page PDF vs one picture, and for a follow-up question (cached) vs the first.

    .venv/bin/python -m bench.pdf_ttft [--model DIR] [--threads 1] [--pages 8] [--repeats 2]

The PDF (`--pages` text pages, US letter) is rendered as the bot does (`bot.pdf_pages`, a child
process, each page at the default pixel budget); "one picture" is its first page alone. Each input is
asked about in a fresh session, then a follow-up question without pictures in the same session, so
the follow-up reuses the session's KV cache (prefix reuse on, the default engine). Every answer runs
to `--answer-tokens`. Medians over `--repeats` sessions.
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from bench.common import (
    conversation_turn,
    engine_running,
    median,
    model_parser,
    model_to_run,
    prompt_image,
    request,
    run_request,
    table,
)
from bot.pdf_pages import PdfRenderer
from engine.arch import DEFAULT_MAX_PIXELS
from engine.interface import PromptImage, PromptTurn

SYSTEM = PromptTurn("system", "You are a helpdesk assistant.")


def text_pdf(pages: int) -> bytes:
    """US-letter pages (612x792 pt) of 11 pt text, as a scanned manual would look."""
    images = []
    font = ImageFont.load_default(size=22)
    for number in range(1, pages + 1):
        image = Image.new("RGB", (1224, 1584), (255, 255, 255))  # 144 dpi
        draw = ImageDraw.Draw(image)
        draw.text((100, 80), f"Installation guide - page {number}", fill=(0, 0, 0), font=ImageFont.load_default(size=40))
        for line in range(50):
            draw.text((100, 180 + 26 * line), f"{number}.{line} Press the reset button for {line % 7 + 2} seconds "
                      "until the status light blinks orange, then pair the device again.", fill=(0, 0, 0), font=font)
        images.append(image)
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=144.0)
    return out.getvalue()


async def ask(engine: Any, session: str, pictures: tuple[PromptImage, ...], answer_tokens: int) -> list[dict[str, Any]]:
    """First question with the pictures, then a follow-up: TTFT, prompt and reused tokens of each."""
    names = ", ".join(f"Page {n}" for n in range(1, len(pictures) + 1))
    first = PromptTurn("user", f"(The pictures above are, in order: {names}.)\nHow do I reset the device?", pictures)
    turns = [SYSTEM, first]
    rows = []
    for k, question in enumerate(["", "And how long do I hold the button?"]):
        if question:
            turns.append(PromptTurn("user", question))
        rows.append(await conversation_turn(engine, f"{session}-{k}", session, turns, answer_tokens))
    return rows


async def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--answer-tokens", type=int, default=8)
    args = parser.parse_args()
    model = model_to_run(args)
    document = text_pdf(args.pages)
    renderer = PdfRenderer(max_pixels=DEFAULT_MAX_PIXELS, timeout_s=120)
    started = time.perf_counter()
    rendered = await renderer.render(document, max_pages=args.pages)
    render_s = time.perf_counter() - started
    pages = tuple(prompt_image(page.data) for page in rendered.pages)
    size = f"{rendered.pages[0].width}x{rendered.pages[0].height}"
    print(f"model {model}; {args.pages}-page PDF ({len(document) // 1024} KB) rendered in {render_s:.2f} s, "
          f"pages {size}; {args.answer_tokens} tokens per answer; medians of {args.repeats}")
    inputs = {"one picture (page 1)": pages[:1], f"{args.pages}-page PDF": pages}
    results: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in inputs}
    async with engine_running(model, args.device) as engine:
        await run_request(engine, request("warm", "warm", [PromptTurn("user", "Hello")], 2))
        for repeat in range(args.repeats):
            for index, (name, pictures) in enumerate(inputs.items()):
                # A picture already seen would come from the feature cache: each repeat varies one pixel row.
                varied = tuple(prompt_image(_vary(p.data, repeat)) for p in pictures)
                results[name].append(await ask(engine, f"r{repeat}-{index}", varied, args.answer_tokens))
    rows = []
    for name, runs in results.items():
        first = median([r[0]["ttft"] for r in runs])
        follow = median([r[1]["ttft"] for r in runs])
        rows.append([name, runs[0][0]["prompt"], first, runs[0][1]["prompt"], runs[0][1]["cached"], follow, follow / first])
    print(table(["input", "prompt tokens (1st)", "TTFT 1st s", "prompt tokens (follow-up)", "reused",
                 "TTFT follow-up s", "follow-up/1st"], rows))
    print(f"{args.pages}-page PDF / one picture, first question: {rows[1][2] / rows[0][2]:.1f}x")


def _vary(data: bytes, seed: int) -> bytes:
    if seed == 0:
        return data
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.putpixel((0, 0), (seed % 256, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


if __name__ == "__main__":
    asyncio.run(main())
