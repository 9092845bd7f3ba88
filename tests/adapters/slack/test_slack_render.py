"""Rendering a reply stream into a thread, on the wire of the stand-in (no model needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.render import RenderOptions, render
from adapters.slack.stream import Poster
from bot.messages import Answer, AnswerDelta, Document, Generating, Notice, QueuePosition, Reply, Text
from tests.adapters.slack.slack_standin import SlackStandIn


async def replies(*items: Reply) -> AsyncIterator[Reply]:
    for item in items:
        yield item


def poster(slack: SlackStandIn) -> Poster:
    return Poster(AsyncWebClient(token=slack.bot_token, base_url=slack.api_url))


async def test_placeholder_shows_queue_position_then_the_answer(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "q", "U1")
    stream = replies(QueuePosition(2), QueuePosition(1), Generating(), AnswerDelta("**Hel"), AnswerDelta("lo**"),
                     Answer("**Hello**", 1, 10, 2))
    await render(stream, poster(slack), "C1", root, RenderOptions(interval=0))
    (message,) = slack.bot_messages("C1", root)
    assert message.edits[0] == ":hourglass_flowing_sand: Waiting for the model - you are number 2 in the queue."
    assert message.edits[1] == ":hourglass_flowing_sand: Waiting for the model - you are next."
    assert message.text == "*Hello*"


async def test_updates_are_throttled_but_the_final_text_lands(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "q", "U1")
    deltas = [AnswerDelta(f"w{i} ") for i in range(50)]
    full = "".join(d.text for d in deltas)
    await render(replies(Generating(), *deltas, Answer(full, 1, 10, 50)), poster(slack), "C1", root,
                 RenderOptions(interval=60))
    (message,) = slack.bot_messages("C1", root)
    assert message.text == full
    assert len(slack.calls("chat.update")) == 1  # the placeholder, then only the final text


async def test_error_replaces_the_placeholder(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "q", "U1")
    await render(replies(Generating(), Text("The model failed; try again.", kind="error")), poster(slack), "C1", root,
                 RenderOptions(interval=0))
    (message,) = slack.bot_messages("C1", root)
    assert message.text == ":warning: The model failed; try again."


async def test_command_text_and_notice_are_own_messages(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "q", "U1")
    await render(replies(Text("Cleared."), Notice("Older turns were left out.")), poster(slack), "C1", root,
                 RenderOptions())
    assert [m.text for m in slack.bot_messages("C1", root)] == ["Cleared.", "_Older turns were left out._"]


async def test_export_document_is_uploaded_into_the_thread(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "export", "U1")
    doc = Document("session.json", b'{"turns": []}', "application/json", "Your conversation")
    await render(replies(doc), poster(slack), "C1", root, RenderOptions())
    (upload,) = slack.uploads
    assert (upload.filename, upload.data, upload.channel, upload.thread_ts, upload.initial_comment) == (
        "session.json", b'{"turns": []}', "C1", root, "Your conversation",
    )


async def test_long_code_is_also_uploaded_as_a_file(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "html please", "U1")
    code = "".join(f"<p>{i}</p>\n" for i in range(40))
    short = "print(1)\n"
    answer = f"Here:\n```html\n{code}```\nand\n```python\n{short}```"
    await render(replies(Generating(), Answer(answer, 7, 10, 100)), poster(slack), "C1", root,
                 RenderOptions(code_file_lines=30))
    (upload,) = slack.uploads
    assert upload.filename == "answer-7-1.html" and upload.data == code.encode() and upload.thread_ts == root


async def test_shorter_final_text_removes_extra_messages(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "q", "U1")
    stream = replies(Generating(), AnswerDelta("x" * 30 + " " + "y" * 30), Answer("short", 1, 1, 1))
    await render(stream, poster(slack), "C1", root, RenderOptions(limit=40, interval=0))
    assert [m.text for m in slack.bot_messages("C1", root)] == ["short"]
    assert len(slack.calls("chat.delete")) == 1


async def test_rate_limited_post_waits_and_succeeds(slack: SlackStandIn) -> None:
    slack.fail("chat.postMessage", retry_after=1)
    await render(replies(Text("hello")), poster(slack), "D1", None, RenderOptions())
    first, second = slack.calls("chat.postMessage")
    assert second.at - first.at >= 0.9 and [m.text for m in slack.bot_messages("D1")] == ["hello"]
