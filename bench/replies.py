"""What one streamed answer costs on each platform, and whether a 429 storm loses any of it.

The core's side is scripted: `Generating`, then a 2,000-character answer as deltas of about four
characters spread evenly over `--seconds` (20 by default, real time), then the final `Answer`. The
one reply renderer (bot/render.py) writes it through each platform's real transport (the real
python-telegram-bot and slack_sdk clients) to the stand-ins under tests/, which record every call.

Per platform: API calls and request bytes for the answer (parameters serialised as JSON, so the
figure is comparable between platforms, not the exact wire size), the time from the first token to
the first request that shows answer text, and a 429 storm: the next `--storm` calls of the method
that grows the answer are refused with 429 / retry-after 1 s; the run must still end with exactly
the answer on screen (asserted).

    .venv/bin/python -m bench.replies [--seconds 20] [--storm 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from telegram import Bot

from adapters.slack.calls import Poster
from adapters.slack.transport import Recipient, SlackTransport, StreamGate
from adapters.telegram.drafts import Drafts
from adapters.telegram.outbox import Outbox, Target
from adapters.telegram.transport import TelegramTransport
from adapters.web.sse import SseTransport, event_bytes
from bot.messages import Answer, AnswerDelta, Generating, Reply
from bot.render import Renderer
from tests.adapters.slack.slack_standin import SlackStandIn
from tests.adapters.telegram.botapi_standin import BotApiStandIn

from .common import machine, quiet, table

ANSWER_CHARS = 2_000
PRIVATE_CHAT, GROUP_CHAT = 4242, -100_4242
TEXT_METHODS = {
    "sendMessage", "editMessageText", "sendMessageDraft",
    "chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream",
}


def answer_text(chars: int = ANSWER_CHARS) -> str:
    """Plain words in paragraphs (no Markdown), so every platform shows exactly these characters."""
    words = "the printer shows error code four on its panel so open the rear door and clear the paper".split()
    out: list[str] = []
    size, i = 0, 0
    while size < chars:
        word = words[i % len(words)]
        sep = "" if not out else ("\n\n" if i % 60 == 0 else " ")
        out.append(sep + word)
        size += len(sep) + len(word)
        i += 1
    return "".join(out)[:chars].rstrip() + "."


@dataclass
class Script:
    text: str
    seconds: float
    first_token_at: float = 0.0

    async def replies(self) -> AsyncIterator[Reply]:
        yield Generating()
        pieces = [self.text[i : i + 4] for i in range(0, len(self.text), 4)]
        gap = self.seconds / len(pieces)
        start = time.monotonic()
        for n, piece in enumerate(pieces):
            if n == 0:
                self.first_token_at = time.monotonic()
            yield AnswerDelta(piece)
            await asyncio.sleep(max(0.0, start + (n + 1) * gap - time.monotonic()))
        yield Answer(self.text, turn_id=1, latency_ms=int(self.seconds * 1000), output_tokens=len(pieces))


@dataclass(frozen=True)
class Row:
    platform: str
    storm: int
    calls: int
    refused: int
    kib: float
    first_text_s: float
    shown_ok: bool
    methods: str = ""

    def cells(self) -> list[str]:
        return [
            self.platform,
            str(self.storm) if self.storm else "-",
            str(self.calls),
            str(self.refused),
            f"{self.kib:.1f}",
            f"{self.first_text_s:.2f}",
            "yes" if self.shown_ok else "NO",
            self.methods,
        ]


def _bytes(params: dict[str, Any]) -> int:
    return len(json.dumps(params, ensure_ascii=False, default=str).encode())


async def telegram_run(
    script: Script, *, chat_id: int, interval: float, storm: int, label: str, drafts: bool = False
) -> Row:
    async with BotApiStandIn() as api:
        bot = Bot(api.token, base_url=f"{api.url}/bot", base_file_url=f"{api.url}/file/bot")
        async with bot:
            if storm:
                api.fail_next("sendMessageDraft" if drafts else "editMessageText", storm, retry_after=1)
            outbox = Outbox(bot)
            native = {"drafts": Drafts(outbox), "draft_id": 1} if drafts else {}
            transport = TelegramTransport(outbox, Target(chat_id), interval=interval, typing_every_s=4.0, **native)
            await Renderer().render(script.replies(), transport)
        calls = [r for r in api.requests if r.method not in ("getMe", "getUpdates")]
        first = next(r.at for r in calls if r.method in TEXT_METHODS and r.status == 200)
        shown = "\n\n".join(api.texts(chat_id))
        row = _row(label, storm, [(r.params, r.status) for r in calls], first - script.first_token_at, shown, script)
        return replace(row, methods=_methods(r.method for r in calls))


async def slack_run(script: Script, *, interval: float, storm: int, label: str, stream: bool = False) -> Row:
    async with SlackStandIn() as slack:
        root = slack.post_user_message("C1", "why does the printer say E4?", "U1")
        start = len(slack.requests)
        growing = "chat.appendStream" if stream else "chat.update"
        if storm:
            slack.fail(growing, count=storm, retry_after=1)
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        native = {"gate": StreamGate(), "recipient": Recipient("T1", "U1")} if stream else {}
        transport = SlackTransport(Poster(client), "C1", root, interval=interval, **native)
        await Renderer().render(script.replies(), transport)
        calls = slack.requests[start:]
        first = next(r.at for r in calls if r.method in TEXT_METHODS and any(r.params.get(k) for k in ("text", "markdown_text", "chunks")))
        shown = "\n\n".join(m.text for m in slack.bot_messages("C1", root))
        statuses = [(r.params, 429 if storm and i < storm else 200)
                    for i, r in enumerate(c for c in calls if c.method == growing)]
        others = [(r.params, 200) for r in calls if r.method != growing]
        row = _row(label, storm, statuses + others, first - script.first_token_at, shown, script)
        return replace(row, methods=_methods(r.method for r in calls))


async def web_run(script: Script) -> Row:
    transport = SseTransport()
    await Renderer().render(script.replies(), transport)
    events: list[tuple[str, dict[str, Any]]] = []
    while not transport.events.empty():
        events.append(transport.events.get_nowait())
    size = sum(len(event_bytes(name, data)) for name, data in events)
    final = next(data["text"] for name, data in events if name == "answer")
    # SSE events are written as they come: the first delta is on the wire at once.
    return Row("web (SSE events)", 0, len(events), 0, size / 1024, 0.0, final == script.text, _methods(n for n, _ in events))


def _methods(names: Iterable[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in Counter(names).items())


def _row(label: str, storm: int, calls: list[tuple[dict[str, Any], int]], first_s: float, shown: str, script: Script) -> Row:
    return Row(
        label,
        storm,
        len(calls),
        sum(1 for _, status in calls if status == 429),
        sum(_bytes(params) for params, _ in calls) / 1024,
        first_s,
        shown == script.text,
    )


async def main(args: argparse.Namespace) -> list[Row]:
    text = answer_text()
    runs: list[Callable[[Script], Awaitable[Row]]] = [
        lambda s: telegram_run(s, chat_id=PRIVATE_CHAT, interval=1.0, storm=0, label="telegram private (edits)"),
        lambda s: telegram_run(s, chat_id=GROUP_CHAT, interval=3.0, storm=0, label="telegram group (edits)"),
        lambda s: slack_run(s, interval=1.0, storm=0, label="slack thread (chat.update)"),
        lambda s: telegram_run(s, chat_id=PRIVATE_CHAT, interval=1.0, storm=0, label="telegram private (drafts)", drafts=True),
        lambda s: slack_run(s, interval=1.0, storm=0, label="slack thread (native stream)", stream=True),
        web_run,
        lambda s: telegram_run(s, chat_id=PRIVATE_CHAT, interval=1.0, storm=args.storm, label="telegram private, 429 storm"),
        lambda s: slack_run(s, interval=1.0, storm=args.storm, label="slack thread, 429 storm"),
        lambda s: telegram_run(s, chat_id=PRIVATE_CHAT, interval=1.0, storm=args.storm, label="telegram drafts, 429 storm", drafts=True),
        lambda s: slack_run(s, interval=1.0, storm=args.storm, label="slack stream, 429 storm", stream=True),
    ]
    rows = []
    for run in runs:
        row = await run(Script(text, args.seconds))
        assert row.shown_ok, f"{row.platform}: the text on screen is not the answer"
        rows.append(row)
    return rows


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the answer streams (real time)")
    parser.add_argument("--storm", type=int, default=8, help="429s in a row on the method that grows the answer")
    args = parser.parse_args()
    quiet()
    logging.getLogger("adapters").setLevel(logging.ERROR)
    logging.getLogger("bot").setLevel(logging.ERROR)
    rows = asyncio.run(main(args))
    print(machine())
    print(f"answer: {ANSWER_CHARS} characters in {ANSWER_CHARS // 4} deltas over {args.seconds:g} s; storm: {args.storm} x 429")
    print(table(["platform", "429s", "calls", "of them 429", "KiB sent", "first token -> text (s)", "0 lost", "calls by method"],
                [row.cells() for row in rows]))


if __name__ == "__main__":
    cli()
