"""The terminal chat: lines from standard input, answers streamed to standard output.

`/image PATH` attaches a picture, a PDF or a video (MP4, MOV, WebM, GIF) to the next question (repeat it
for several); any other line is a question or a command. `/good` and `/bad` rate the last answer (the console's thumbs up and down; a
second vote replaces the first, and `/export` lists it). Reading stdin is scriptable:
`printf '/image a.png\\nWhat is this?\\n/bad\\n' | vlmbot chat`.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import itertools
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bot.filemodes import make_private_dir, write_private_file
from bot.i18n import N_, _, speaking
from bot.inbox import Inbox
from bot.incoming import Delivery, Sender
from bot.language import Language
from bot.messages import Attachment
from bot.transport import (
    AnswerDone,
    Capabilities,
    MessageRef,
    OutgoingFile,
    StreamRef,
    TextKind,
)

__all__ = ["ConsoleAdapter", "ConsoleTransport"]

log = logging.getLogger(__name__)

PLATFORM = "console"


class ConsoleAdapter:
    name = "console"

    def __init__(
        self,
        inbox: Inbox,
        *,
        thread: str = "main",
        files_dir: Path,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        on_eof: Callable[[], None] | None = None,
        greeting: str | None = None,
        language: Language | None = None,
    ) -> None:
        self._inbox = inbox
        self._thread = thread
        self._files_dir = files_dir
        self._stdin = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._on_eof = on_eof
        self._greeting = greeting
        self._pending: list[Attachment] = []
        self._task: asyncio.Task[None] | None = None
        self._user = getpass.getuser()
        self._sender = Sender(self._user, language=language)  # from LANG (settings.system_locale)
        self._language = Language.EN  # what the inbox decides, known once started
        self.finished = asyncio.Event()

    # --- Adapter ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._language = await self._inbox.language_of(self._sender)
        self._say(
            N_(
                "vlmbot console chat (thread '{thread}'). /image PATH attaches a picture, a PDF or a screen recording; "
                "/good or /bad rates the last answer; /help lists commands."
            ),
            thread=self._thread,
        )
        if self._greeting:
            with speaking(self._language):
                greeting = _(self._greeting)
            self._say(N_("Note: {greeting}"), greeting=greeting)
        self._task = asyncio.create_task(self._read_loop(), name="console-reader")

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._inbox.close(PLATFORM)

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
                    self._say(N_("error: something went wrong with that; please try again."))
            if self._pending:
                self._say(N_("{count} attached file(s) were not sent: no question followed."), count=len(self._pending))
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
        delivery = Delivery(PLATFORM, self._thread, self._sender, line, attachments=attachments)
        await self._inbox.submit(delivery, ConsoleTransport(self._out, self._files_dir)).wait()

    def _attach(self, raw_path: str) -> None:
        if not raw_path:
            self._say(N_("Usage: /image PATH"))
            return
        path = Path(raw_path).expanduser()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._say(N_("There is no file {path}; check the path and try again."), path=path)
            return
        except IsADirectoryError:
            self._say(N_("{path} is a folder; give the path of a file in it."), path=path)
            return
        except PermissionError:
            self._say(N_("I am not allowed to read {path}; check its permissions."), path=path)
            return
        except OSError as exc:  # the OS's own words are English: they go to the log, the user gets ours
            log.info("console: reading %s failed: %s", path, exc)
            self._say(N_("Cannot read {path}; check the path and try again."), path=path)
            return
        self._pending.append(Attachment(data=data, filename=path.name))
        self._say(N_("Attached {name} ({count} file(s) for the next question)."), name=path.name, count=len(self._pending))

    def _say(self, text: str, **values: object) -> None:
        """`text` is marked with N_() where it is written; it is translated here, in the chat's language."""
        with speaking(self._language):
            line = _(text).format(**values)
        self._out.write(line + "\n")
        self._out.flush()


class ConsoleTransport:
    """Replies printed as they come: the answer streams onto a "bot> " line; files are saved."""

    def __init__(self, out: TextIO, files_dir: Path) -> None:
        self.capabilities = Capabilities(max_text=1_000_000)  # a terminal shows any length
        self.edits = None
        self.streams = self
        self.status_line = None
        self.typing = None
        self._out = out
        self._files_dir = files_dir
        self._streamed: dict[StreamRef, str] = {}
        self._ids = itertools.count(1)

    def _print(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    async def post(self, text: str, kind: TextKind, *, answer: AnswerDone | None = None) -> MessageRef:
        # Said within the inbox's `speaking` block: the prefixes come out in the user's language.
        match kind:
            case TextKind.ANSWER:
                line = f"bot> {text}"
            case TextKind.ERROR:
                line = _("error: {text}").format(text=text)
            case TextKind.NOTICE:
                line = _("note: {text}").format(text=text)
            case _:
                line = text
        self._print(f"{line}\n")
        return f"m{next(self._ids)}"

    async def post_file(self, file: OutgoingFile) -> None:
        make_private_dir(self._files_dir)
        path = write_private_file(self._files_dir / Path(file.filename).name, file.data)
        self._print(_("{caption} Saved to {path}").format(caption=file.caption or _("File"), path=path) + "\n")

    async def start_stream(self) -> StreamRef:
        stream = f"s{next(self._ids)}"
        self._streamed[stream] = ""
        self._print("bot> ")
        return stream

    async def update_stream(self, stream: StreamRef, text: str) -> None:
        shown = self._streamed[stream]
        if text.startswith(shown):  # a terminal can only append
            self._print(text[len(shown) :])
            self._streamed[stream] = text

    async def finish_stream(self, stream: StreamRef, text: str, *, answer: AnswerDone | None = None) -> MessageRef:
        shown = self._streamed.pop(stream)
        visible = shown.strip()  # the final answer is the streamed text without its outer spaces
        if text.startswith(visible):
            rest = text[len(visible) :]
            self._print((rest.lstrip() if shown != shown.rstrip() else rest) + "\n")
        else:  # the final answer differs from the stream (e.g. /find's list of boxes): show it too
            self._print(f"\nbot> {text}\n")
        return stream
