"""Nothing the model or a user writes becomes Slack markup in the bot's messages (issue 11, finding 9).

The model's answer is forced through the real decode loop; the assertions are on what the Slack
stand-in received: every chat.postMessage and chat.update (streamed updates included) and uploads.
"""

from __future__ import annotations

import json
import re

import pytest

from adapters.slack.mrkdwn import escape_markdown
from tests.adapters.slack.slack_standin import SlackStandIn
from tests.hooks import forced_answer
from tests.preset_answers import FOUND, label_picture

CHANNEL = "C0HELP"
ATTACK = (
    "See [docs](https://x/>y<!channel>) and [more](https://x/|<!here>).\n"
    "Attention <!channel> <!here> <!everyone> <@U0ALICE> <#C0HELP> <!subteam^S0OPS>\n"
    "**[<@U0ALICE>](https://ok.example/a?b=1&c=2)**"
)
OUR_LINK = re.compile(r"<https?://[^\s<>|]+\|[^<>]*>")
PINGS = ("<!", "<@", "<#")


@pytest.fixture(params=["http"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param  # rendering is the same over Socket Mode


def sent_texts(slack: SlackStandIn) -> list[str]:
    calls = slack.calls("chat.postMessage") + slack.calls("chat.update")
    return [str(c.params.get("text", "")) for c in calls] + [
        str(c.params.get("initial_comment", "")) for c in slack.calls("files.completeUploadExternal")
    ]


def assert_no_markup_but_our_links(texts: list[str]) -> None:
    for text in texts:
        rest = OUR_LINK.sub("", text)
        assert "<" not in rest and ">" not in rest, text
        for link in OUR_LINK.findall(text):
            assert not any(ping in link for ping in PINGS), link


async def test_model_answer_cannot_ping_or_break_links(make_bot) -> None:
    async with make_bot(max_new_tokens=600) as bot:
        slack = bot.slack
        slack.streaming_error = "not_allowed_token_type"  # the answer grows by chat.update
        bot.service.engine.generate_hook = forced_answer(bot.service, ATTACK, piece=16)
        event = slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> summarize", kind="app_mention")
        await bot.deliver(event)
        await bot.settle()
        (turn,) = await bot.turns(f"{CHANNEL}/{event['ts']}")
        assert turn.answer == ATTACK  # the model did write the markup
        texts = sent_texts(slack)
        assert len(texts) >= 2  # the placeholder and the answer at least
        assert_no_markup_but_our_links(texts)
        (final,) = [m.text for m in slack.bot_messages(CHANNEL, event["ts"])]
        assert "<https://x/%3Ey%3C!channel%3E|docs>" in final and "<https://x/%7C%3C!here%3E|more>" in final
        assert "Attention &lt;!channel&gt; &lt;!here&gt;" in final
        assert "*<https://ok.example/a?b=1&amp;c=2|&lt;@U0ALICE&gt;>*" in final


def streamed_texts(slack: SlackStandIn) -> list[str]:
    """Every Markdown text sent to a native stream, and the text of every block sent with a message."""
    calls = [c for m in ("chat.startStream", "chat.appendStream", "chat.stopStream") for c in slack.calls(m)]
    texts = [str(c.params.get("markdown_text") or "") for c in calls]
    for call in calls + slack.calls("chat.postMessage") + slack.calls("chat.update"):
        blocks = call.params.get("blocks") or []
        texts += [str(b.get("text") or "") for b in (json.loads(blocks) if isinstance(blocks, str) else blocks)
                  if b.get("type") == "markdown"]
    return texts


async def test_a_streamed_answer_cannot_ping(make_bot) -> None:
    """Slack reads its own markup in `markdown_text` too: the stream gets it escaped."""
    async with make_bot(max_new_tokens=600) as bot:
        slack = bot.slack
        bot.service.engine.generate_hook = forced_answer(bot.service, ATTACK, piece=16)
        event = slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> summarize", kind="app_mention")
        await bot.deliver(event)
        await bot.settle()
        (stream,) = slack.streams
        assert stream.text == escape_markdown(ATTACK) and stream.shown.pings == ()
        assert "[docs](https://x/%3Ey%3C!channel%3E)" in stream.text  # no token can start in a URL
        texts = streamed_texts(slack)
        assert len(texts) >= 2
        assert all("<" not in text and ">" not in text for text in texts), texts


async def test_user_text_echoed_by_the_bot_cannot_ping(make_bot) -> None:
    """A file name in "I skipped ..." and a slash-command question echoed as a thread's root message."""
    async with make_bot(max_new_tokens=600) as bot:
        slack = bot.slack
        bot.service.engine.generate_hook = forced_answer(bot.service, "An answer.")
        note = slack.host_file(b"just text", "<!channel> read me.txt", "text/plain")
        event = slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> what is in it?", kind="app_mention", files=[note])
        await bot.deliver(event)
        # Slack sends what the user typed escaped, and a typed @channel as <!channel>
        await bot.command("&lt;!here&gt; <!channel> what is an MTU?", channel=CHANNEL)
        await bot.settle()
        texts = sent_texts(slack)
        assert any("I skipped &lt;!channel&gt; read me.txt" in text for text in texts), texts
        assert any("asked: &lt;!here&gt; &lt;!channel&gt; what is an MTU?" in text for text in texts), texts
        assert_no_markup_but_our_links([text.replace(f"<@{'U0ALICE'}> asked:", "asked:") for text in texts])


async def test_a_picture_caption_quoting_the_user_cannot_ping(make_bot) -> None:
    """`find @channel`: the marked picture's comment quotes what the user asked to find."""
    async with make_bot(max_new_tokens=4096) as bot:
        slack = bot.slack
        bot.service.engine.generate_hook = forced_answer(bot.service, FOUND)
        shot = slack.host_file(label_picture(), "device.png", "image/png")
        event = slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> find <!channel>", kind="app_mention", files=[shot])
        await bot.deliver(event)
        await bot.settle()
        (upload,) = slack.uploads
        assert upload.initial_comment == '"&lt;!channel&gt;" marked on the picture.'
        assert_no_markup_but_our_links(sent_texts(slack))
