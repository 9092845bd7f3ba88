"""The reply stream of one question as server-sent events in the body of the POST that asked it.

One pump task reads the conversation's reply stream into a queue; the handler writes the queue out
with keep-alive comments in between. When the browser goes away (Stop, a closed tab) the next write
fails and the pump is cancelled, which cancels the request and frees its place on the GPU.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bot.messages import Answer, AnswerDelta, Document, Generating, Notice, Picture, QueuePosition, Reply, Text

__all__ = ["event_bytes", "reply_event", "stream_replies"]

log = logging.getLogger(__name__)

FAILED = "Something went wrong while answering; please try again."
_END = object()


def event_bytes(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def reply_event(reply: Reply) -> tuple[str, dict[str, Any]]:
    """The SSE event name and payload for one reply of the conversation service."""
    if isinstance(reply, QueuePosition):
        return "queue", {"position": reply.position}
    if isinstance(reply, Generating):
        return "generating", {}
    if isinstance(reply, AnswerDelta):
        return "delta", {"text": reply.text}
    if isinstance(reply, Answer):
        return "answer", {
            "text": reply.text,
            "turn_id": reply.turn_id,
            "latency_ms": reply.latency_ms,
            "output_tokens": reply.output_tokens,
        }
    if isinstance(reply, Text):
        return "text", {"text": reply.text, "kind": reply.kind}
    if isinstance(reply, Notice):
        return "notice", {"text": reply.text}
    if isinstance(reply, Document | Picture):
        return ("document" if isinstance(reply, Document) else "picture"), {
            "filename": reply.filename,
            "mime_type": reply.mime_type,
            "caption": reply.caption,
            "data": base64.b64encode(reply.data).decode(),
        }
    raise TypeError(f"unknown reply {reply!r}")


async def stream_replies(
    request: web.Request, replies: AsyncIterator[Reply], *, keepalive_s: float, label: str
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must pass each event on at once
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async with contextlib.aclosing(replies) as stream:  # type: ignore[type-var]
                async for reply in stream:
                    queue.put_nowait(reply)
        except Exception:
            log.exception("web %s: the reply stream failed", label)
            queue.put_nowait(Text(FAILED, kind="error"))
        finally:
            queue.put_nowait(_END)

    task = asyncio.create_task(pump(), name=f"web-replies-{label}")
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=keepalive_s)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is _END:
                break
            await response.write(event_bytes(*reply_event(item)))
        await response.write(event_bytes("done", {}))
    except ConnectionError:
        log.info("web %s: the browser went away; stopping its answer", label)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response
