"""An answer about HTML is shown as the model wrote it, and what looks like Slack markup in it stays text.

The model's answer goes through the real decode loop; the assertions are on what Slack would show of
what the stand-in received (slack_text.py: Slack's escaping rules), streamed and not streamed.
"""

from __future__ import annotations

import pytest

from adapters.slack.mrkdwn import escape_markdown
from tests.adapters.slack.slack_standin import SlackStandIn
from tests.adapters.slack.slack_text import shown
from tests.hooks import forced_answer

CHANNEL = "C0HELP"
DM = "D0ALICE"
URL = "https://ok.example/a?b=1&c=2"
ANSWER = (
    "Here is the mock-up as HTML:\n\n```html\n<div class=\"a\">&nbsp;</div>\n```\n\n"
    "Inline: `<div class=\"a\">&nbsp;</div>`, and in prose a < b && c > d.\n"
    f"Written by the model: <@U12345> <!channel> &lt;!here&gt;. Docs: [query]({URL})"
)
LITERALS = ('<div class="a">&nbsp;</div>', "a < b && c > d", "<@U12345> <!channel> &lt;!here&gt;")


@pytest.fixture(params=["http"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param  # rendering is the same over Socket Mode


def assert_nothing_live_in_what_was_sent(slack: SlackStandIn) -> None:
    """Every text the bot sent, streamed or not, pings no one once Slack reads it."""
    for call in slack.calls("chat.postMessage") + slack.calls("chat.update"):
        assert shown(str(call.params.get("text") or ""), markdown=False).pings == (), call.params
    for method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
        for call in slack.calls(method):
            assert shown(str(call.params.get("markdown_text") or ""), markdown=True).pings == (), call.params


async def test_a_streamed_html_answer_is_shown_as_written(make_bot) -> None:
    async with make_bot(max_new_tokens=600) as bot:
        slack = bot.slack
        bot.service.engine.generate_hook = forced_answer(bot.service, ANSWER, piece=5)
        event = slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> turn this mock-up into HTML", kind="app_mention")
        await bot.deliver(event)
        await bot.settle()
        (stream,) = slack.streams
        assert len(slack.calls("chat.appendStream")) >= 2  # pieces, some of them inside the link's URL
        assert stream.state == "stopped"
        assert stream.shown.text == ANSWER and stream.shown.tokens == ()
        assert f"]({URL})" in stream.text  # the URL is not HTML-escaped: Slack decodes nothing there
        (message,) = slack.bot_messages(CHANNEL, event["ts"])
        assert message.shown.pings == ()
        assert_nothing_live_in_what_was_sent(slack)


@pytest.mark.parametrize("where", ["thread", "dm"])
async def test_an_updated_html_answer_is_shown_as_written(make_bot, where: str) -> None:
    """chat.postMessage + chat.update: a workspace that refuses streams, and a top-level DM message."""
    async with make_bot(max_new_tokens=600) as bot:
        slack = bot.slack
        bot.service.engine.generate_hook = forced_answer(bot.service, ANSWER, piece=5)
        if where == "thread":
            slack.streaming_error = "not_allowed_token_type"
            event = slack.message_event(CHANNEL, f"<@{slack.bot_user_id}> turn this into HTML", kind="app_mention")
            channel, thread_ts = CHANNEL, event["ts"]
        else:
            event = slack.message_event(DM, "turn this into HTML", channel_type="im")
            channel, thread_ts = DM, None
        await bot.deliver(event)
        await bot.settle()
        assert slack.streams == [] and len(slack.calls("chat.update")) >= 1  # refused or not tried
        (message,) = [m for m in slack.bot_messages(channel) if m.thread_ts == thread_ts]
        assert message.shown.text == ANSWER and message.shown.tokens == ()  # the markdown block
        fallback = shown(message.text, markdown=False)  # notifications and clients without blocks
        assert all(literal in fallback.text for literal in LITERALS), fallback.text
        assert fallback.pings == ()
        assert_nothing_live_in_what_was_sent(slack)


def test_markdown_escape_of_a_prefix_is_a_prefix_of_the_escape() -> None:
    escaped = escape_markdown(ANSWER)
    for end in range(len(ANSWER) + 1):
        assert escaped.startswith(escape_markdown(ANSWER[:end]))


@pytest.mark.parametrize("text, sent", [
    ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
    ("`<@U1>` <!channel>", "`&lt;@U1&gt;` &lt;!channel&gt;"),
    ("[x](https://h/?a=1&b=<!here>) & more", "[x](https://h/?a=1&b=%3C!here%3E) &amp; more"),
    ("[x] (y&z)", "[x] (y&amp;z)"),  # not a link: escaped as prose
    ("[x](u v&w)", "[x](u v&amp;w)"),  # a URL ends at a space
])
def test_markdown_escape(text: str, sent: str) -> None:
    assert escape_markdown(text) == sent
    assert shown(sent, markdown=True).tokens == ()
