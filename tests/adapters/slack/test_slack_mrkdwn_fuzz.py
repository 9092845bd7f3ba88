"""Fuzzing the Markdown -> mrkdwn renderer (issue 11, finding 9): whatever the model writes, streamed or
whole, split into messages or not, the only `<` in the output opens a link the renderer made, so no
`<!channel>`, `<@U...>` or `<#C...>` of the model's reaches Slack. Bounded so that CI runs it in seconds.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.slack.mrkdwn import to_mrkdwn
from bot.markdown import split, utf16_length

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OUR_LINK = re.compile(r"<https?://[^\s<>|]+\|[^<>]*>")
PINGS = ("<!", "<@", "<#")

PIECES = [
    "[", "]", "(", ")", "<", ">", "|", "!", "@", "#", "&", ";", "%", "^", "*", "**", "_", "__", "~~", "`", "```",
    "\n", " ", "- ", "# ", "| a | b |", "channel", "here", "everyone", "U0ALICE", "C0HELP", "subteam^S1", "&lt;",
    "&gt;", "&amp;", "https://", "http://x.io/", "[docs](https://x/", "](", "\x00", "\x00L0\x00", "\x00B\x00",
]
markdown = st.lists(st.sampled_from(PIECES) | st.text(max_size=6), max_size=40).map("".join)


def assert_safe(mrkdwn: str) -> None:
    rest = OUR_LINK.sub("", mrkdwn)
    assert "<" not in rest and ">" not in rest, mrkdwn


@FUZZ
@given(markdown, st.integers(0, 400))
def test_no_model_markup_in_the_output(text: str, streamed: int) -> None:
    assert_safe(to_mrkdwn(text))
    assert_safe(to_mrkdwn(text[:streamed]))  # a streaming update shows a prefix of the answer


@FUZZ
@given(markdown, st.integers(16, 120))
def test_no_ping_in_any_message_of_a_split(text: str, limit: int) -> None:
    for piece in split(text, limit):  # the renderer cuts the Markdown; each message is converted
        assert utf16_length(piece) <= limit
        chunk = to_mrkdwn(piece)
        assert_safe(chunk)
        assert not any(ping in chunk for ping in PINGS), chunk
