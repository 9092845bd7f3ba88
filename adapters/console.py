"""The terminal chat: lines from standard input, answers streamed to standard output.

`/image PATH` attaches a picture to the next question (repeat it for several); any other line is a
question or a command. Reading stdin is scriptable: `printf '/image a.png\\nWhat is this?\\n' | vlmbot chat`.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bot.conversations import Conversations
from bot.filemodes import make_private_dir, write_private_file
from bot.messages import (
    Answer,
    AnswerDelta,
    Attachment,
    Document,
    Generating,
    IncomingMessage,
    Notice,
    Picture,
    QueuePosition,
    Text,
)

__all__ = ["ConsoleAdapter"]

log = logging.getLogger(__name__)

PLATFORM = "console"


class ConsoleAdapter:
    name = "console"

    def __init__(
        self,
        conversations: Conversations,
        *,
        thread: str = "main",
        files_dir: Path,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        on_eof: Callable[[], None] | None = None,
        greeting: str | None = None,
    ) -> None:
        self._conversations = conversations
        self._thread = thread
        self._files_dir = files_dir
        self._stdin = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._on_eof = on_eof
        self._greeting = greeting
        self._pending: list[Attachment] = []
        self._task: asyncio.Task[None] | None = None
        self._user = getpass.getuser()
        self.finished = asyncio.Event()

    # --- Adapter ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._say(f"vlmbot console chat (thread '{self._thread}'). /image PATH attaches a picture; /help lists commands.")
        if self._greeting:
            self._say(f"Note: {self._greeting}")
        self._task = asyncio.create_task(self._read_loop(), name="console-reader")

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- input --------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def reader() -> None:
            # A daemon thread: a blocked read of a terminal must not keep the process alive.
            for line in self._stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=reader, name="console-stdin", daemon=True).start()
        try:
            while (line := await lines.get()) is not None:
                try:
                    await self.process_line(line)
                except Exception:  # one failed line must not end the chat
                    log.exception("console: handling %r failed", line[:80])
                    self._say("error: something went wrong with that; please try again.")
            if self._pending:
                self._say(f"{len(self._pending)} attached picture(s) were not sent: no question followed.")
        finally:
            self.finished.set()
            if self._on_eof is not None:
                self._on_eof()

    async def process_line(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        if line.startswith("/image"):
            self._attach(line.removeprefix("/image").strip())
            return
        attachments, self._pending = tuple(self._pending), []
        message = IncomingMessage(
            platform=PLATFORM, thread_key=self._thread, user_id=self._user, text=line, attachments=attachments
        )
        await self._render(message)

    def _attach(self, raw_path: str) -> None:
        if not raw_path:
            self._say("Usage: /image PATH")
            return
        path = Path(raw_path).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._say(f"Cannot read {path}: {exc.strerror or exc}. Check the path and try again.")
            return
        self._pending.append(Attachment(data=data, filename=path.name))
        self._say(f"Attached {path.name} ({len(self._pending)} picture(s) for the next question).")

    # --- output -------------------------------------------------------------------------------

    async def _render(self, message: IncomingMessage) -> None:
        streaming = False
        streamed: list[str] = []
        async for reply in self._conversations.handle(message):
            if isinstance(reply, QueuePosition):
                if reply.position > 1:
                    self._say(f"(waiting: {reply.position - 1} question(s) ahead of yours)")
            elif isinstance(reply, Generating):
                self._out.write("bot> ")
                streaming = True
            elif isinstance(reply, AnswerDelta):
                streamed.append(reply.text)
                self._out.write(reply.text)
                self._out.flush()
            elif isinstance(reply, Answer):
                if streaming:
                    self._out.write("\n")
                if not streaming or reply.text != "".join(streamed).strip():
                    # The final answer differs from the stream (e.g. /find's list of boxes): show it too.
                    self._say(f"bot> {reply.text}")
                self._out.flush()
                streaming = False
            elif isinstance(reply, Text):
                self._say(("error: " if reply.kind == "error" else "") + reply.text)
            elif isinstance(reply, Notice):
                self._say(f"note: {reply.text}")
            elif isinstance(reply, Document | Picture):
                path = self._save(reply.filename, reply.data)
                self._say(f"{reply.caption or 'File'} Saved to {path}")
        if streaming:  # the stream ended without a final answer (an error was reported)
            self._out.write("\n")

    def _save(self, filename: str, data: bytes) -> Path:
        make_private_dir(self._files_dir)
        return write_private_file(self._files_dir / Path(filename).name, data)

    def _say(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()
