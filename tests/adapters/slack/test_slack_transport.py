"""The renderer writing through the Slack transports, on the wire of the stand-in (no model needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.calls import Poster
from adapters.slack.transport import ResponseTransport, SlackTransport
from bot.messages import Answer, AnswerDelta, Document, Generating, Notice, QueuePosition, Reply, Text
from bot.render import Renderer, RenderOptions
from bot.wording import CODE_FILE_CAPTION, FILES_NEED_A_THREAD, WORKING, queued
from tests.adapters.slack.slack_standin import SlackStandIn


async def replies(*items: Reply | float) -> AsyncIterator[Reply]:
    import asyncio

    for item in items:
        if isinstance(item, float):
            await asyncio.sleep(item)
        else:
            yield item


def transport(slack: SlackStandIn, channel: str, thread_ts: str | None, **kw) -> SlackTransport:
    poster = Poster(AsyncWebClient(token=slack.bot_token, base_url=slack.api_url))
    return SlackTransport(poster, channel, thread_ts, **{"interval": 0.0, **kw})


async def render(t, *items: Reply | float, **options) -> None:
    await Renderer(RenderOptions(**{"queue_notice_delay_s": 0.0, **options})).render(replies(*items), t)


async def test_placeholder_shows_queue_position_then_the_answer(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "q", "U1")
    await render(transport(slack, "C1", root), QueuePosition(2), 0.02, QueuePosition(1), 0.02, Generating(), 0.02,
                 AnswerDelta("**Hel"), 0.02, AnswerDelta("lo**"), 0.02, Answer("**Hello**", 1, 10, 2))
    (message,) = slack.bot_messages("C1", root)
    assert message.edits[:3] == [queued(2), queued(1), WORKING]
    assert message.text == "*Hello*"


async def test_updates_are_throttled_but_the_final_text_lands(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "q", "U1")
    deltas = [AnswerDelta(f"w{i} ") for i in range(50)]
    full = "".join(d.text for d in deltas).strip()
    await render(transport(slack, "C1", root, interval=60), Generating(), 0.02, *deltas, Answer(full, 1, 10, 50))
    (message,) = slack.bot_messages("C1", root)
    assert message.text == full
    assert len(slack.calls("chat.update")) == 1  # the placeholder, then only the final text


async def test_error_replaces_the_placeholder(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "q", "U1")
    await render(transport(slack, "C1", root), Generating(), 0.02, Text("The model failed; try again.", kind="error"))
    (message,) = slack.bot_messages("C1", root)
    assert message.text == ":warning: The model failed; try again."


async def test_command_text_and_notice_are_own_messages(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "q", "U1")
    await render(transport(slack, "C1", root), Text("Cleared."), Notice("Older turns were left out."))
    assert [m.text for m in slack.bot_messages("C1", root)] == ["Cleared.", "_Older turns were left out._"]


async def test_export_document_is_uploaded_into_the_thread(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "export", "U1")
    doc = Document("session.json", b'{"turns": []}', "application/json", "Your conversation")
    await render(transport(slack, "C1", root), doc)
    (upload,) = slack.uploads
    assert (upload.filename, upload.data, upload.channel, upload.thread_ts, upload.initial_comment) == (
        "session.json", b'{"turns": []}', "C1", root, "Your conversation",
    )


async def test_long_code_is_also_uploaded_as_a_file(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "html please", "U1")
    code = "".join(f"<p>{i}</p>\n" for i in range(40))
    answer = f"Here:\n```html\n{code}```\nand\n```python\nprint(1)\n```"
    await render(transport(slack, "C1", root), Generating(), Answer(answer, 7, 10, 100), code_file_chars=300)
    (upload,) = slack.uploads
    assert (upload.filename, upload.data, upload.thread_ts) == ("answer-7.html", code.rstrip("\n").encode(), root)
    assert upload.initial_comment == CODE_FILE_CAPTION


async def test_shorter_final_text_removes_extra_messages(slack: SlackStandIn) -> None:
    root = slack.post_user_message("C1", "q", "U1")
    await render(transport(slack, "C1", root, max_text=40), Generating(), AnswerDelta("x" * 30 + "\n\n" + "y" * 30),
                 0.05, Answer("short", 1, 1, 1))
    assert [m.text for m in slack.bot_messages("C1", root)] == ["short"]
    assert len(slack.calls("chat.delete")) == 1


async def test_rate_limited_post_waits_and_succeeds(slack: SlackStandIn) -> None:
    slack.fail("chat.postMessage", retry_after=1)
    await render(transport(slack, "D1", None), Text("hello"))
    first, second = slack.calls("chat.postMessage")
    assert second.at - first.at >= 0.9 and [m.text for m in slack.bot_messages("D1")] == ["hello"]


async def test_a_private_response_cannot_carry_files(slack: SlackStandIn) -> None:
    from slack_bolt.context.respond.async_respond import AsyncRespond

    respond = AsyncRespond(response_url=f"{slack.base_url}/response/t1")
    doc = Document("session.json", b"{}", "application/json")
    await render(ResponseTransport(respond), QueuePosition(3), 0.05, Text("Model: tiny"), doc)
    assert [r["text"] for r in slack.responses] == [queued(3), "Model: tiny", FILES_NEED_A_THREAD]
    assert slack.uploads == []
