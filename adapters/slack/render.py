"""The core's reply stream -> Slack messages and file uploads in one channel or thread."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.messages import Answer, AnswerDelta, Document, Generating, Notice, Picture, QueuePosition, Reply, Text

from .mrkdwn import MESSAGE_LIMIT, code_blocks, escape, to_mrkdwn
from .stream import Poster, ReplyStream

__all__ = ["RenderOptions", "render", "upload"]

log = logging.getLogger(__name__)

WORKING = ":hourglass_flowing_sand: Working on it..."
_EXTENSIONS = {
    "python": "py", "py": "py", "javascript": "js", "js": "js", "typescript": "ts", "ts": "ts",
    "html": "html", "css": "css", "json": "json", "sql": "sql", "bash": "sh", "sh": "sh", "shell": "sh",
    "yaml": "yaml", "yml": "yaml", "xml": "xml", "csv": "csv", "markdown": "md", "md": "md",
    "java": "java", "go": "go", "rust": "rs", "c": "c", "cpp": "cpp", "c++": "cpp", "csharp": "cs",
}


@dataclass(frozen=True)
class RenderOptions:
    limit: int = MESSAGE_LIMIT  # characters per message
    interval: float = 1.0  # seconds between streaming updates of one reply
    code_file_lines: int = 30  # code blocks at least this long are also uploaded as files


def _waiting(position: int) -> str:
    ahead = "you are next" if position <= 1 else f"you are number {position} in the queue"
    return f":hourglass_flowing_sand: Waiting for the model - {ahead}."


def _text(reply: Text) -> str:
    body = to_mrkdwn(reply.text)
    return f":warning: {body}" if reply.kind == "error" else body


async def upload(
    poster: Poster, channel: str, thread_ts: str | None, filename: str, data: bytes, comment: str | None
) -> None:
    """files_upload_v2 (get an upload URL, upload, complete) into the channel or thread."""
    await poster.call(
        "files.upload",
        lambda: poster.client.files_upload_v2(
            channel=channel, thread_ts=thread_ts, content=data, filename=filename, title=filename,
            initial_comment=escape(comment) if comment else None,  # plain text: it may quote the user
        ),
    )


async def render(
    replies: AsyncIterator[Reply], poster: Poster, channel: str, thread_ts: str | None, options: RenderOptions
) -> None:
    """Consume the stream; the first status or text goes into one placeholder that the answer replaces."""
    stream = ReplyStream(poster, channel, thread_ts, limit=options.limit, interval=options.interval)
    answer = ""
    answered = False  # the placeholder holds final content; later texts get their own messages
    async for reply in replies:
        if isinstance(reply, QueuePosition) and not answer:
            await stream.show(_waiting(reply.position))
        elif isinstance(reply, Generating) and not answer:
            await stream.show(WORKING)
        elif isinstance(reply, AnswerDelta):
            answer += reply.text
            await stream.show(to_mrkdwn(answer))
        elif isinstance(reply, Answer):
            await stream.show(to_mrkdwn(reply.text), final=True)
            answered = True
            if not reply.files_follow:
                await _upload_long_code(poster, channel, thread_ts, reply, options)
        elif isinstance(reply, Text):
            if stream.started and not answer and not answered:
                await stream.show(_text(reply), final=True)  # replaces the placeholder
                answered = True
            else:
                await stream.flush()
                await ReplyStream(poster, channel, thread_ts, limit=options.limit).show(_text(reply), final=True)
                answered = answered or not stream.started
        elif isinstance(reply, Notice):
            await ReplyStream(poster, channel, thread_ts, limit=options.limit).show(f"_{to_mrkdwn(reply.text)}_", final=True)
        elif isinstance(reply, Document | Picture):
            await upload(poster, channel, thread_ts, reply.filename, reply.data, reply.caption)
    await stream.flush()


async def _upload_long_code(
    poster: Poster, channel: str, thread_ts: str | None, answer: Answer, options: RenderOptions
) -> None:
    for i, block in enumerate(code_blocks(answer.text), start=1):
        if block.code.count("\n") < options.code_file_lines:
            continue
        ext = _EXTENSIONS.get(block.language, "txt")
        name = f"answer-{answer.turn_id}-{i}.{ext}"
        await upload(poster, channel, thread_ts, name, block.code.encode(), "The code from the answer as a file.")
