"""The reply to one question as server-sent events in the body of the POST that asked it.

`SseTransport` is the renderer's transport for the web chat: its writes become events in a queue,
and `stream_events` writes the queue out, with keep-alive comments in between, until the inbox has
finished the question. When the browser goes away (Stop, a closed tab) the next write fails and the
question is cancelled, which cancels the request and frees its place on the GPU.

Events: `status` {kind: "queued" | "working" | null, text, position}, `generating` {} (the answer
starts), `delta` {text} (the answer grows), `answer` {text, turn_id, latency_ms, output_tokens},
`text` {text, kind: "info" | "error"}, `notice` {text}, `document` / `picture` {filename, mime_type,
caption, data (base64)}, and `done` {} last.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
from typing import Any

from aiohttp import web

from bot.lanes import Ticket
from bot.transport import AnswerDone, Capabilities, MessageRef, OutgoingFile, Status, StreamRef, TextKind

__all__ = ["SseTransport", "event_bytes", "stream_events"]

log = logging.getLogger(__name__)

# The page shows any length and renders at most once per animation frame: no splitting, no throttling.
_CAPABILITIES = Capabilities(max_text=1_000_000, min_interval_s=0.0)
_END: tuple[str, dict[str, Any]] = ("", {})  # the question is finished


def event_bytes(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _answer(text: str, answer: AnswerDone) -> dict[str, Any]:
    return {"text": text, "turn_id": answer.turn_id, "latency_ms": answer.latency_ms, "output_tokens": answer.output_tokens}


class SseTransport:
    def __init__(self) -> None:
        self.capabilities = _CAPABILITIES
        self.edits = None
        self.streams = self
        self.status_line = self
        self.typing = None
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._streamed: dict[StreamRef, str] = {}

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        self.events.put_nowait((name, data))

    async def post(self, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        if answer is not None:
            self._emit("answer", _answer(text, answer))
        elif kind is TextKind.NOTICE:
            self._emit("notice", {"text": text})
        else:
            self._emit("text", {"text": text, "kind": "error" if kind is TextKind.ERROR else "info"})
        return f"m{next(self._ids)}"

    async def post_file(self, file: OutgoingFile) -> None:
        self._emit("picture" if file.picture else "document", {
            "filename": file.filename,
            "mime_type": file.mime_type,
            "caption": file.caption,
            "data": base64.b64encode(file.data).decode(),
        })

    async def start_stream(self) -> StreamRef:
        stream = f"s{next(self._ids)}"
        self._streamed[stream] = ""
        self._emit("generating", {})
        return stream

    async def update_stream(self, stream: StreamRef, text: str) -> None:
        shown = self._streamed[stream]
        if text.startswith(shown) and len(text) > len(shown):  # the page appends deltas
            self._emit("delta", {"text": text[len(shown) :]})
            self._streamed[stream] = text

    async def finish_stream(self, stream: StreamRef, text: str, *, answer: AnswerDone | None = None) -> MessageRef:
        if answer is not None:
            self._emit("answer", _answer(text, answer))  # replaces whatever the deltas showed
        else:
            await self.update_stream(stream, text)  # an answer cut short: what came stays
        return stream

    async def show_status(self, status: Status | None) -> None:
        self._emit("status", {
            "kind": status.kind.value if status else None,
            "text": status.text if status else "",
            "position": status.position if status else None,
        })


async def stream_events(
    request: web.Request, transport: SseTransport, ticket: Ticket, *, keepalive_s: float, label: str
) -> web.StreamResponse:
    """Write the transport's events until the question is finished; a browser gone cancels it."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must pass each event on at once
        }
    )
    await response.prepare(request)

    async def end_after_ticket() -> None:
        await ticket.wait()
        transport.events.put_nowait(_END)

    ender = asyncio.create_task(end_after_ticket(), name=f"web-replies-{label}")
    try:
        while True:
            try:
                item = await asyncio.wait_for(transport.events.get(), timeout=keepalive_s)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is _END:
                break
            await response.write(event_bytes(*item))
        await response.write(event_bytes("done", {}))
    except ConnectionError:
        log.info("web %s: the browser went away; stopping its answer", label)
    finally:
        ticket.cancel()  # a no-op once finished; else the answer nobody reads is stopped
        ender.cancel()
        await asyncio.wait([ender])
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response
