"""Conversation flows through the console adapter on the tiny Qwen2.5-VL model."""

from __future__ import annotations

import asyncio
import getpass
import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ConsoleAdapter, ConsoleTransport
from bot.messages import Answer, AnswerDelta, Attachment, IncomingMessage, Notice, Text
from tests.conftest import picture_bytes
from tests.engine.test_local_engine import record_hook, slow_hook


class Chat:
    """A console adapter on a service, with its output captured and the model's inputs recorded."""

    def __init__(self, service: Any, tmp_path: Path, thread: str = "main") -> None:
        self.service = service
        self.out = io.StringIO()
        self.calls: list[dict] = []
        self.adapter = ConsoleAdapter(
            service.inbox, thread=thread, files_dir=tmp_path / "exports", stdout=self.out
        )
        service.engine.generate_hook = record_hook(self.calls)

    async def send(self, *lines: str) -> str:
        start = self.out.tell()
        for line in lines:
            await self.adapter.process_line(line)
        return self.out.getvalue()[start:]

    def images_in_last_prompt(self) -> int:
        grid = self.calls[-1].get("image_grid_thw")
        return 0 if grid is None else int(grid.shape[0])

    def last_prompt_text(self) -> str:
        tokenizer = self.service.engine.loaded.processor.tokenizer
        return tokenizer.decode(self.calls[-1]["input_ids"][0])


def write_picture(tmp_path: Path, name: str, color: tuple[int, int, int]) -> Path:
    path = tmp_path / name
    path.write_bytes(picture_bytes(color=color))
    return path


async def session_turns(service: Any, thread: str = "main") -> list[Any]:
    session = await service.store.active_session("console", thread)
    return await service.store.turns(session.id)


async def test_picture_then_follow_up_sees_the_picture(service_factory, tmp_path: Path) -> None:
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {red}", "What colour is this?")
        assert "Attached red.png" in out and "bot> " in out
        assert chat.images_in_last_prompt() == 1
        await chat.send("And what shape is it?")
        assert chat.images_in_last_prompt() == 1  # not re-sent, still in the prompt
        assert "What colour is this?" in chat.last_prompt_text()
        turns = await session_turns(service)
        assert [t.status for t in turns] == ["done", "done"]
        assert turns[0].image_hashes and not turns[1].image_hashes
        assert turns[0].latency_ms is not None and turns[0].output_tokens


async def test_two_pictures_in_one_question(service_factory, tmp_path: Path) -> None:
    a = write_picture(tmp_path, "a.png", (220, 0, 0))
    b = write_picture(tmp_path, "b.png", (0, 0, 220))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        await chat.send(f"/image {a}", f"/image {b}", "What changed between them?")
        assert chat.images_in_last_prompt() == 2
        assert len((await session_turns(service))[0].image_hashes) == 2


async def test_picture_without_question_is_kept_for_the_next_one(service_factory, red_png: bytes) -> None:
    async with service_factory() as service:
        conversations = service.conversations
        replies = [
            r
            async for r in conversations.handle(
                IncomingMessage("console", "t", "u", "", (Attachment(red_png, "red.png"),))
            )
        ]
        assert replies == [Text("Got it - what would you like to know?")]
        calls: list[dict] = []
        service.engine.generate_hook = record_hook(calls)
        replies = [r async for r in conversations.handle(IncomingMessage("console", "t", "u", "What is it?"))]
        assert isinstance(replies[-1], Answer)
        assert calls[0]["image_grid_thw"].shape[0] == 1


async def test_clear_cancels_in_flight_and_archives(service_factory, tmp_path: Path) -> None:
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    async with service_factory(max_new_tokens=400) as service:
        chat = Chat(service, tmp_path)
        await chat.send(f"/image {red}", "First question")
        old = await service.store.active_session("console", "main")
        started = threading.Event()
        service.engine.generate_hook = slow_hook(service.engine, delay=0.05, started=started)
        replies: list[Any] = []

        async def ask() -> None:
            async for reply in service.conversations.handle(IncomingMessage("console", "main", "u", "Long one")):
                replies.append(reply)

        task = asyncio.create_task(ask())
        await asyncio.to_thread(started.wait, 10)
        out = await chat.send("/clear")
        assert "Cleared" in out
        await asyncio.wait_for(task, 10)
        assert replies[-1] == Text("Stopped: this conversation was cleared.")
        archived = await service.store.get_session(old.id)
        assert archived.status == "archived"
        turns = await service.store.turns(old.id)
        assert [t.status for t in turns] == ["done", "cancelled"]
        assert service.engine.health().running == 0
        chat.calls.clear()
        service.engine.generate_hook = record_hook(chat.calls)
        service.conversations.limits = type(service.conversations.limits)(
            **{**service.conversations.limits.__dict__, "max_new_tokens": 4}
        )
        await chat.send("What did I show you?")
        assert chat.images_in_last_prompt() == 0
        assert "First question" not in chat.last_prompt_text()
        new = await service.store.active_session("console", "main")
        assert new.id != old.id


async def test_undo_drops_last_turn_from_context(service_factory, tmp_path: Path) -> None:
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        await chat.send("Question alpha", "Question beta")
        out = await chat.send("/undo")
        assert 'Removed "Question beta"' in out
        await chat.send("Question gamma")
        prompt = chat.last_prompt_text()
        assert "Question alpha" in prompt and "Question beta" not in prompt
        turns = await session_turns(service)
        assert [t.in_context for t in turns] == [True, False, True]
        assert (await chat.send("/undo", "/undo", "/undo")).count("Nothing to undo.") == 1


async def test_retry_regenerates_last_answer(service_factory, tmp_path: Path) -> None:
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        await chat.send(f"/image {red}", "Describe it")
        out = await chat.send("/retry")
        assert "bot> " in out
        assert chat.images_in_last_prompt() == 1
        assert chat.last_prompt_text().count("Describe it") == 1  # the old attempt is not in the prompt
        turns = await session_turns(service)
        assert [(t.user_text, t.in_context, t.status) for t in turns] == [
            ("Describe it", False, "done"),
            ("Describe it", True, "done"),
        ]
        assert turns[1].image_hashes == turns[0].image_hashes


async def test_name_and_export(service_factory, tmp_path: Path) -> None:
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        await chat.send(f"/image {red}", "What is this?")
        assert 'now called "Printer error"' in await chat.send("/name   Printer   error")
        out = await chat.send("/export")
        path = Path(out.strip().split("Saved to ")[-1])
        body = json.loads(path.read_text())
        assert body["name"] == "Printer error"
        assert body["model"] == service.engine.model_name
        turn = body["turns"][0]
        assert turn["user_input"] == "What is this?"
        assert turn["image_hashes"] == [(await session_turns(service))[0].image_hashes[0]]
        assert isinstance(turn["model_output"], str) and isinstance(turn["latency_ms"], int)
        assert turn["timestamp"].startswith("20")


async def test_status_help_and_unknown_command(service_factory, tmp_path: Path) -> None:
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        status = await chat.send("/status")
        assert "no question waiting" in status and "sdpa" in status and "cpu" in status
        assert "/clear" in await chat.send("/help")
        unknown = await chat.send("/frobnicate")
        assert "Unknown command /frobnicate" in unknown and "/export" in unknown
        assert "Usage: /name TITLE" in await chat.send("/name")


async def test_history_survives_restart(service_factory, tmp_path: Path) -> None:
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    async with service_factory() as service:
        await Chat(service, tmp_path).send(f"/image {red}", "What colour?")
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        await chat.send("And after the restart?")
        assert chat.images_in_last_prompt() == 1
        assert "What colour?" in chat.last_prompt_text()
        assert len(await session_turns(service)) == 2


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_bytes(picture_bytes()[:50]), "damaged"),
        (lambda p: p.write_text("just some text, not a picture"), "not a file I can read"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(__import__("tests.bot.test_pictures").bot.test_pictures.huge_png_header()), "too large"),
        (lambda p: p.write_bytes(picture_bytes(size=(1500, 1500), fmt="BMP")), "limit"),
        (None, "There is no file"),
    ],
    ids=["corrupt", "non-image", "empty", "decompression-bomb", "oversized", "unreadable-path"],
)
async def test_bad_input_gets_one_line_and_keeps_history(service_factory, tmp_path: Path, make, expected) -> None:
    async with service_factory(max_image_bytes=1_000_000) as service:
        chat = Chat(service, tmp_path)
        await chat.send("First question")
        bad = tmp_path / "bad.png"
        if make is not None:
            make(bad)
        out = await chat.send(f"/image {bad}", "What is wrong here?")
        errors = [line for line in out.splitlines() if expected in line]
        assert len(errors) == 1, out
        turns = await session_turns(service)
        # A picture that was read but refused stops the question (nothing half-stored); a path that
        # could not be read is reported when typed, and the question goes ahead without it.
        assert len(turns) == (2 if make is None else 1)
        assert not any(t.image_hashes for t in turns)
        await chat.send("Still there?")
        assert "First question" in chat.last_prompt_text()


async def test_old_turns_left_out_beyond_context_budget(service_factory, tmp_path: Path) -> None:
    async with service_factory(context_tokens=650) as service:  # the system prompt alone is ~190 tiny tokens
        chat = Chat(service, tmp_path)
        for i in range(4):
            await chat.send(f"Question number {i} " + "padding words " * 20)
        out = await chat.send("Final question")
        assert "note: The" in out and "left out" in out
        prompt = chat.last_prompt_text()
        assert "Question number 0" not in prompt and "Final question" in prompt


async def test_shutdown_interrupts_in_flight_and_retry_completes(service_factory, tmp_path: Path) -> None:
    async with service_factory(max_new_tokens=400) as service:
        started = threading.Event()
        service.engine.generate_hook = slow_hook(service.engine, delay=0.05, started=started)
        replies: list[Any] = []

        async def ask() -> None:
            async for reply in service.conversations.handle(IncomingMessage("console", "main", "u", "Slow question")):
                replies.append(reply)

        task = asyncio.create_task(ask())
        await asyncio.to_thread(started.wait, 10)
        await service.conversations.drain(grace_s=0.2)
        await asyncio.wait_for(task, 10)
        assert any(isinstance(r, AnswerDelta) for r in replies)
        assert replies[-1] == Text("The answer was interrupted; send /retry to try again.", kind="error")
        late = [r async for r in service.conversations.handle(IncomingMessage("console", "main", "u", "hello?"))]
        assert late[0].kind == "error" and "restarting" in late[0].text
        assert [t.status for t in await session_turns(service)] == ["interrupted"]
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        out = await chat.send("/retry")
        assert "bot> " in out
        turns = await session_turns(service)
        assert [(t.user_text, t.status, t.in_context) for t in turns] == [
            ("Slow question", "interrupted", False),
            ("Slow question", "done", True),
        ]


async def test_notice_type_is_used_for_left_out_turns(service_factory) -> None:
    async with service_factory(context_tokens=400) as service:
        conv = service.conversations
        for text in ("one " * 60, "two " * 60):
            [r async for r in conv.handle(IncomingMessage("console", "n", "u", text))]
        replies = [r async for r in conv.handle(IncomingMessage("console", "n", "u", "three"))]
        assert isinstance(replies[0], Notice)


@pytest.mark.parametrize("quantization", ["int8", "nf4"])
async def test_quantized_model_answers_a_picture(service_factory, tmp_path: Path, quantization: str) -> None:
    pytest.importorskip("bitsandbytes")
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    async with service_factory(quantization=quantization) as service:
        chat = Chat(service, tmp_path)
        out = await chat.send(f"/image {red}", "What colour is this?")
        assert "Attached red.png" in out and "bot> " in out
        assert chat.images_in_last_prompt() == 1
        turns = await session_turns(service)
        assert [t.status for t in turns] == ["done"] and turns[0].output_tokens
        assert f"quantization {quantization} (bitsandbytes" in await chat.send("/status")


async def test_good_and_bad_rate_the_last_answer_through_stdin(service_factory, tmp_path: Path) -> None:
    """A scripted session end to end (stdin lines, the read loop, the inbox): answer, /bad, /export."""
    red = write_picture(tmp_path, "red.png", (220, 0, 0))
    script = f"/good\n/image {red}\nWhat colour is this?\n/bad\n/bad\n/good\n/bad\n/export\n"
    async with service_factory() as service:
        out = io.StringIO()
        adapter = ConsoleAdapter(
            service.inbox, thread="rated", files_dir=tmp_path / "exports", stdin=io.StringIO(script), stdout=out
        )
        await adapter.start()
        await asyncio.wait_for(adapter.finished.wait(), timeout=120)
        await adapter.stop()
        text = out.getvalue()
        greeting, *_ = text.splitlines()
        assert "/good or /bad rates the last answer" in greeting
        assert "There is no answer to vote on yet" in text  # /good before any answer
        assert "Thanks - marked as not helpful" in text
        assert "You already marked this answer as not helpful." in text
        assert "Changed your vote: marked as helpful." in text
        assert "Changed your vote: marked as not helpful." in text
        path = Path(text.strip().split("Saved to ")[-1])
        turn = json.loads(path.read_text())["turns"][0]
        assert turn["status"] == "done" and turn["model_output"]
        [vote] = turn["feedback"]
        assert vote["vote"] == "down" and vote["user"] == getpass.getuser()
        assert vote["time"].startswith("20")


async def test_help_lists_good_and_bad(service_factory, tmp_path: Path) -> None:
    async with service_factory() as service:
        shown = await Chat(service, tmp_path).send("/help")
        assert "/good - Mark the last answer as helpful" in shown
        assert "/bad - Mark the last answer as not helpful" in shown


@pytest.mark.parametrize(
    ("streamed", "final", "printed"),
    [
        ([" The", " The dialog"], "The dialog says hi", "bot>  The dialog says hi\n"),  # a leading space, stripped at the end
        (["Done "], "Done", "bot> Done \n"),
        (["Two ", "Two lines\n\n"], "Two lines\n\nand more", "bot> Two lines\n\nand more\n"),
        (["Boxes"], '[{"bbox_2d": [1, 2, 3, 4]}]', 'bot> Boxes\nbot> [{"bbox_2d": [1, 2, 3, 4]}]\n'),  # a different final text
    ],
)
async def test_a_streamed_answer_is_printed_once(tmp_path: Path, streamed: list[str], final: str, printed: str) -> None:
    """The final answer is the streamed text stripped: the terminal adds only what is new, never the answer twice."""
    out = io.StringIO()
    transport = ConsoleTransport(out, tmp_path)
    stream = await transport.start_stream()
    for text in streamed:
        await transport.update_stream(stream, text)
    await transport.finish_stream(stream, final)
    assert out.getvalue() == printed
