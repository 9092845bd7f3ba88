"""The reply renderer against a recording transport: splitting, files, wording, throttling, streams,
statuses, and no text lost when a write is delayed or refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.markdown import code_blocks, split
from bot.messages import Answer, AnswerDelta, Document, Generating, Notice, Picture, QueuePosition, Reply, Text
from bot.render import Renderer, RenderOptions
from bot.transport import StatusKind, TextKind, TransportError
from bot.wording import CODE_FILE_CAPTION, EMPTY_ANSWER, WORKING, queued, reading
from tests.bot.recording import Recording


async def script(*items: Any) -> AsyncIterator[Reply]:
    """Replies in order; a number is a pause in seconds, an exception is raised."""
    for item in items:
        if isinstance(item, int | float):
            await asyncio.sleep(item)
        elif isinstance(item, BaseException):
            raise item
        else:
            yield item


def answer(text: str, turn_id: int = 7, **kw: Any) -> Answer:
    return Answer(text=text, turn_id=turn_id, latency_ms=5, output_tokens=3, **kw)


async def render(transport: Recording, *items: Any, **options: Any) -> None:
    await Renderer(RenderOptions(**{"queue_notice_delay_s": 0.0, **options})).render(script(*items), transport)


PARAGRAPHS = [f"Paragraph {i}: " + " ".join(f"w{i}.{j}" for j in range(12)) for i in range(10)]
LONG = "\n\n".join(PARAGRAPHS)


# --- splitting ---------------------------------------------------------------------------------


async def test_a_long_answer_is_split_at_paragraphs_by_the_transports_limit() -> None:
    t = Recording(max_text=200)
    await render(t, Generating(), *[AnswerDelta(LONG[i : i + 90]) for i in range(0, len(LONG), 90)], answer(LONG))
    shown = t.texts(TextKind.ANSWER)
    assert len(shown) > 3 and all(len(m) <= 200 for m in shown)
    assert all(m.startswith("Paragraph ") for m in shown)  # every cut between paragraphs
    assert "\n\n".join(shown) == LONG  # nothing lost or repeated
    finals = [m.answer for m in t.messages.values() if m.answer is not None]
    assert len(finals) == 1 and finals[0].turn_id == 7 and finals[0].text == LONG  # only the last message carries it
    assert list(t.messages.values())[-1].answer is finals[0]


async def test_a_long_code_block_is_cut_into_fenced_blocks() -> None:
    code = "\n".join(f"print({i})  # a line of code" for i in range(40))
    t = Recording(max_text=300)
    await render(t, answer(f"Intro.\n\n```python\n{code}\n```\n\nOutro."), code_file_chars=10**6)
    shown = t.texts(TextKind.ANSWER)
    assert len(shown) > 3 and all(len(m) <= 300 for m in shown)
    pieces = [block for m in shown for block in code_blocks(m)]  # each message's code is a closed block
    assert len(pieces) > 3 and {b.language for b in pieces} == {"python"}
    assert "\n".join(b.code for b in pieces) == code


def test_split_counts_utf16_units_and_cuts_a_huge_word() -> None:
    assert len(split("😀" * 3000, 4096)) == 2
    chunks = split("x" * 10000, 4096)
    assert "".join(chunks) == "x" * 10000 and all(len(c) <= 4096 for c in chunks)
    assert split("   ", 10) == [] and split("short", 10) == ["short"]


async def test_a_shorter_final_answer_removes_the_extra_messages() -> None:
    t = Recording(max_text=200)
    await render(t, AnswerDelta(LONG), 0.05, answer("Short **final** answer."))
    assert t.texts() == ["Short **final** answer."]
    assert t.methods().count("delete") >= 3


# --- code as a file ----------------------------------------------------------------------------


async def test_code_at_the_threshold_also_goes_as_a_file_once() -> None:
    long_code = "x = 1\n" * 20  # 120 characters
    short_code = "y = 2"
    text = f"Here:\n```python\n{long_code}```\nand\n```html\n{short_code}\n```"
    t = Recording()
    await render(t, answer(text), code_file_chars=len(long_code.rstrip("\n")))
    [file] = t.files
    assert (file.filename, file.data, file.caption) == ("answer-7.py", long_code.rstrip("\n").encode(), CODE_FILE_CAPTION)
    assert file.mime_type == "text/x-python"
    t = Recording()
    await render(t, answer(text), code_file_chars=len(long_code))  # one character short of the threshold
    assert t.files == []


async def test_several_long_blocks_are_numbered_and_presets_send_their_own_files() -> None:
    text = "```js\n" + "a();\n" * 10 + "```\n```unknown-lang\n" + "b\n" * 10 + "```"
    t = Recording()
    await render(t, answer(text), code_file_chars=10)
    assert [f.filename for f in t.files] == ["answer-7-1.js", "answer-7-2.txt"]
    t = Recording()
    await render(t, answer(text, files_follow=True), code_file_chars=10)
    assert t.files == []


# --- wording and statuses ----------------------------------------------------------------------


async def test_queue_position_and_working_live_in_a_placeholder_the_answer_replaces() -> None:
    t = Recording()
    await render(t, QueuePosition(3), 0.02, QueuePosition(2), 0.02, Generating(), 0.02, AnswerDelta("Hel"),
                 0.02, AnswerDelta("lo"), answer("Hello"))
    [message] = t.messages.values()
    assert message.text == "Hello" and message.kind is TextKind.ANSWER
    assert message.history[:3] == [queued(3), queued(2), WORKING]
    assert queued(3) == "⏳ Waiting in the queue: 2 questions ahead of yours."
    assert queued(2) == "⏳ Waiting in the queue: 1 question ahead of yours."
    assert queued(1) == "⏳ You are next in the queue."


async def test_next_in_line_is_said_only_when_the_wait_lasts() -> None:
    t = Recording(typing=True)
    await render(t, QueuePosition(1), Generating(), AnswerDelta("Hi"), answer("Hi"), queue_notice_delay_s=5.0)
    [message] = t.messages.values()
    assert message.history == [] and t.typings >= 1  # "working" is the typing indicator's
    t = Recording()
    await render(t, QueuePosition(1), 0.1, AnswerDelta("Hi"), answer("Hi"), queue_notice_delay_s=0.02)
    [message] = t.messages.values()
    assert message.history == [queued(1)]


async def test_a_status_line_shows_statuses_and_is_cleared_by_the_answer() -> None:
    t = Recording(status_line=True, streams=True, edits=False)
    await render(t, QueuePosition(2), 0.02, Generating(), 0.02, AnswerDelta("Hi"), 0.02, answer("Hi"))
    kinds = [s.kind if s else None for s in t.statuses]
    assert kinds == [StatusKind.QUEUED, StatusKind.WORKING, None] and t.statuses[0].position == 2
    assert t.texts() == ["Hi"]


async def test_reading_the_pictures_is_worded_by_their_number() -> None:
    t = Recording(status_line=True, streams=True, edits=False)
    await render(t, Generating(pictures=1), 0.02, AnswerDelta("Hi"), 0.02, answer("Hi"))
    await render(t, Generating(pictures=3), 0.02, AnswerDelta("Hi"), 0.02, answer("Hi"))
    await render(t, Generating(), 0.02, AnswerDelta("Hi"), 0.02, answer("Hi"))
    assert [s.text for s in t.statuses if s] == [reading(1), reading(3), WORKING]
    assert (reading(1), reading(3), reading(0)) == ("⏳ Reading the picture…", "⏳ Reading the 3 pictures…", WORKING)


async def test_a_native_stream_without_status_line_shows_no_working_message_and_loses_no_time() -> None:
    """A Slack channel thread: no status line, no typing; "reading" would be a message posted only to be
    deleted when the stream starts. The stream's first write is not held back by it either."""
    t = Recording(streams=True, interval=60.0)
    await render(t, Generating(pictures=1), 0.05, AnswerDelta("Hello"), 0.05, answer("Hello there"))
    assert t.methods() == ["start_stream", "update_stream", "finish_stream"]  # "Hello" streamed at once
    assert [(m.text, m.kind) for m in t.messages.values()] == [("Hello there", TextKind.ANSWER)]


async def test_a_queue_message_becomes_the_reading_status_until_the_stream_replaces_it() -> None:
    t = Recording(streams=True)
    await render(t, QueuePosition(1), 0.02, Generating(pictures=1), 0.02, AnswerDelta("Hi"), 0.02, answer("Hi"))
    assert [name for name, _ in t.calls][:4] == ["post", "edit", "start_stream", "delete"]
    assert (t.calls[0][1][0], t.calls[1][1][1]) == (queued(1), reading(1))  # the queue message turned into it
    assert [(m.text, m.kind) for m in t.messages.values()] == [("Hi", TextKind.ANSWER)]  # and went


async def test_without_edits_or_status_line_the_queue_is_a_message_and_working_is_not() -> None:
    t = Recording(edits=False)
    await render(t, QueuePosition(2), 0.02, Generating(), 0.02, AnswerDelta("Hi"), 0.02, answer("Hi"))
    assert [(m.text, m.kind) for m in t.messages.values()] == [(queued(2), TextKind.STATUS), ("Hi", TextKind.ANSWER)]


async def test_an_empty_answer_is_worded() -> None:
    t = Recording()
    await render(t, Generating(), answer("   "))
    assert t.texts() == [EMPTY_ANSWER]


async def test_an_error_replaces_the_placeholder_and_a_lone_status_is_removed() -> None:
    t = Recording()
    await render(t, Generating(), 0.02, Text("The model failed; try again.", kind="error"))
    [message] = t.messages.values()
    assert (message.text, message.kind, message.history) == ("The model failed; try again.", TextKind.ERROR, [WORKING])
    t = Recording()
    await render(t, QueuePosition(4), 0.02)  # ends without anything else (e.g. stopped)
    assert t.messages == {} and t.methods() == ["post", "delete"]


async def test_notices_texts_and_files_are_their_own_messages() -> None:
    t = Recording()
    picture = Picture("found.png", b"png", caption="Found 1")
    document = Document("export.json", b"{}", "application/json", "This conversation as JSON.")
    await render(t, Notice("Older turns were left out."), answer("Answer"), picture, document, Text("Cleared."))
    assert [(m.text, m.kind) for m in t.messages.values()] == [
        ("Older turns were left out.", TextKind.NOTICE), ("Answer", TextKind.ANSWER), ("Cleared.", TextKind.INFO)]
    assert [(f.filename, f.picture, f.caption) for f in t.files] == [
        ("found.png", True, "Found 1"), ("export.json", False, "This conversation as JSON.")]


# --- throttling and lost writes ----------------------------------------------------------------


async def test_updates_are_throttled_but_the_final_text_lands() -> None:
    t = Recording(interval=60)
    deltas = [AnswerDelta(f"w{i} ") for i in range(50)]
    await render(t, Generating(), 0.02, *[x for d in deltas for x in (d, 0.001)], answer("".join(d.text for d in deltas).strip()))
    [message] = t.messages.values()
    assert message.text == "".join(d.text for d in deltas).strip()
    assert t.methods() == ["post", "edit"]  # the "working" placeholder, then within the interval only the final


async def test_a_delayed_update_is_followed_by_one_with_the_whole_text() -> None:
    """The first write is held (a rate limit); text keeps coming meanwhile; then the stream breaks
    without a final answer. The next write carries all of it, and nothing is lost."""
    t = Recording()
    release = t.hold_next("post")

    async def replies() -> AsyncIterator[Reply]:
        yield AnswerDelta("part0 ")
        await t.wait_calls(1)  # the first write is under way, and held
        for i in range(1, 6):
            yield AnswerDelta(f"part{i} ")
        release.set()
        await t.wait_calls(2)
        yield Text("The answer was interrupted.", kind="error")

    await Renderer().render(replies(), t)
    whole = "".join(f"part{i} " for i in range(6))
    assert t.calls[0] == ("post", ("part0 ", TextKind.ANSWER, None))
    assert t.calls[1][0] == "edit" and t.calls[1][1][1] == whole
    answer_message, error = t.messages.values()
    assert answer_message.text == whole and error.text == "The answer was interrupted."


async def test_refused_updates_are_skipped_and_the_final_write_shows_all() -> None:
    t = Recording()
    t.refuse_next("post", count=2)
    await render(t, AnswerDelta("one "), 0.02, AnswerDelta("two "), 0.02, AnswerDelta("three"), 0.02,
                 answer("one two three"))
    assert t.texts() == ["one two three"]


async def test_a_refused_final_write_reaches_the_caller() -> None:
    t = Recording()
    t.refuse_next("post", count=5)
    with pytest.raises(TransportError):
        await render(t, answer("hello"))


async def test_a_gone_recipient_stops_the_writes_but_the_replies_are_read_to_the_end() -> None:
    t = Recording()
    t.refuse_next("post", gone=True)
    read: list[Reply] = []

    async def replies() -> AsyncIterator[Reply]:
        for reply in (AnswerDelta("a"), AnswerDelta("b"), answer("ab"), Document("x.json", b"{}", "application/json")):
            read.append(reply)
            await asyncio.sleep(0.02)
            yield reply

    await Renderer().render(replies(), t)
    assert len(read) == 4 and t.methods() == ["post"] and t.messages == {}


# --- native streams ----------------------------------------------------------------------------


async def test_an_answer_streams_natively_and_the_finish_carries_the_turn() -> None:
    t = Recording(streams=True, edits=True)
    await render(t, QueuePosition(2), 0.02, AnswerDelta("Hel"), 0.02, AnswerDelta("lo"), 0.02, answer("Hello"))
    assert "edit" not in t.methods()  # the answer grew in the stream, not by edits
    [message] = t.messages.values()  # the queue message was taken away when the stream started
    assert message.text == "Hello" and message.answer is not None and message.answer.turn_id == 7
    assert message.history[-1] in ("Hel", "Hello")


async def test_a_long_streamed_answer_finishes_one_stream_per_message() -> None:
    t = Recording(streams=True, edits=True, max_text=200)
    await render(t, *[x for i in range(0, len(LONG), 60) for x in (AnswerDelta(LONG[i : i + 60]), 0.005)], answer(LONG))
    assert "\n\n".join(t.texts()) == LONG and all(len(m) <= 200 for m in t.texts())
    assert t.methods().count("start_stream") == len(t.texts())


async def test_a_refused_stream_falls_back_to_edits() -> None:
    t = Recording(streams=True, edits=True, refuse_streams=True)
    await render(t, AnswerDelta("Hel"), 0.02, AnswerDelta("lo"), 0.02, answer("Hello"))
    assert t.methods()[0] == "start_stream" and t.methods().count("start_stream") == 1
    assert t.texts() == ["Hello"] and "post" in t.methods()


async def test_a_final_answer_unlike_the_stream_replaces_it() -> None:
    t = Recording(streams=True, edits=False)
    await render(t, AnswerDelta('[{"bbox_2d": [1, 2, 3, 4]}]'), 0.02, answer("Located 1 thing."))
    assert t.texts() == ["Located 1 thing."]


async def test_a_reply_stopped_mid_stream_leaves_what_it_showed() -> None:
    """/clear cancels the reply while its native stream is open: the stream is finished with the
    text shown so far (a draft would vanish, a Slack stream would stay open), as edits leave theirs."""
    t = Recording(streams=True, edits=True)
    started = asyncio.Event()

    async def replies() -> AsyncIterator[Reply]:
        yield AnswerDelta("The printer is ")
        await asyncio.sleep(0.05)
        started.set()
        await asyncio.sleep(30)  # the answer would go on; /clear stops it first
        yield AnswerDelta("never shown")

    task = asyncio.create_task(Renderer(RenderOptions()).render(replies(), t))
    await asyncio.wait_for(started.wait(), 5)
    await t.wait_calls(2)  # start_stream, then the first update
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert t.methods().count("finish_stream") == 1
    [message] = t.messages.values()
    assert message.text == "The printer is " and message.answer is None
