"""Markdown -> mrkdwn conversion."""

from __future__ import annotations

import re

import pytest

from adapters.slack.mrkdwn import escape, to_mrkdwn, unescape_slack
from bot.markdown import split


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __also__", "*bold* and *also*"),
        ("*italic* and _kept_", "_italic_ and _kept_"),
        ("***both***", "*_both_*"),
        ("~~gone~~", "~gone~"),
        ("see [the docs](https://example.com/a?b=1)", "see <https://example.com/a?b=1|the docs>"),
        ("# Title", "*Title*"),
        ("### **Step** 2 ###", "*Step* 2*"),
        ("- one\n* two\n  + nested", "• one\n• two\n  • nested"),
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("use `**not bold**` here", "use `**not bold**` here"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("snake_case_name", "snake_case_name"),
    ],
)
def test_inline_conversion(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_code_block_drops_language_and_is_not_formatted() -> None:
    md = "Run:\n```python\nx = a**2 < 3  # *not italic*\n```\ndone **now**"
    assert to_mrkdwn(md) == "Run:\n```\nx = a**2 &lt; 3  # *not italic*\n```\ndone *now*"


def test_table_becomes_code_block() -> None:
    md = "Totals:\n| a | b |\n|---|---|\n| 1 | 2 |\nEnd"
    assert to_mrkdwn(md) == "Totals:\n```\n| a | b |\n|---|---|\n| 1 | 2 |\n```\nEnd"


def test_partial_stream_is_safe() -> None:
    assert to_mrkdwn("**unfinished") == "**unfinished"
    assert to_mrkdwn("```py\ncode") == "```\ncode"


def test_unescape_slack_text_for_the_model() -> None:
    assert unescape_slack("a &lt;b&gt; &amp; <https://x.io|x.io> <https://y.io>") == "a <b> & x.io (https://x.io) https://y.io"


# --- model output cannot write Slack markup (issue 11, finding 9) -------------------------------

# A link this module made: a URL without the characters that end it, then a label without markup.
OUR_LINK = re.compile(r"<https?://[^\s<>|]+\|[^<>]*>")

INJECTIONS = [
    "[docs](https://x/>y<!channel>)",
    "[docs](https://x/|<!here>)",
    "[docs](https://x/?a=1&b=<@U0ALICE>)",
    "[<!channel> and <@U0ALICE>](https://x/)",
    "Attention <!channel>, <!here>, <!everyone>, <!subteam^S0OPS> and <@U0ALICE> in <#C0HELP|help>",
    "already escaped: &lt;!channel&gt; &amp;lt;!here&amp;gt;",
    "`<!channel>` and ```<!here>```",
    "```\n<!channel>\n```",
    "| <!here> | <@U0ALICE> |\n|---|---|",
    "# <!channel> heading",
    "- **<!channel>** ~~<!here>~~ *<@U1>*",
    "placeholder lookalikes \x00L7\x00 and \x00B\x00",
]


def outside_our_links(mrkdwn: str) -> str:
    return OUR_LINK.sub("", mrkdwn)


def test_a_link_url_cannot_close_the_link_and_ping() -> None:
    assert to_mrkdwn("[docs](https://x/>y<!channel>)") == "<https://x/%3Ey%3C!channel%3E|docs>"
    assert to_mrkdwn("[docs](https://x/|<!here>)") == "<https://x/%7C%3C!here%3E|docs>"
    assert to_mrkdwn("[a](https://x/?a=1&b=2)") == "<https://x/?a=1&amp;b=2|a>"


@pytest.mark.parametrize("markdown", INJECTIONS)
def test_model_written_markup_is_shown_not_obeyed(markdown: str) -> None:
    out = to_mrkdwn(markdown)
    assert "<" not in outside_our_links(out) and ">" not in outside_our_links(out), out
    for piece in split(markdown, 40):  # the renderer cuts the Markdown, then each message is converted
        chunk = to_mrkdwn(piece)
        assert "<!" not in chunk and "<@" not in chunk and "<#" not in chunk, chunk


def test_plain_text_mentions_are_escaped() -> None:
    assert to_mrkdwn("<!channel> hi <@U0ALICE>") == "&lt;!channel&gt; hi &lt;@U0ALICE&gt;"
    assert escape("<!here> & co") == "&lt;!here&gt; &amp; co"


def test_split_does_not_cut_a_link() -> None:
    link = "<https://x.io/p|a label with several words>"
    pieces = split("word " * 10 + "[a label with several words](https://x.io/p) end", 80)
    chunks = [to_mrkdwn(p) for p in pieces]  # a cut at the last space that fits would fall inside the label
    assert all(len(p) <= 80 for p in pieces)
    assert [c for c in chunks if link in c] and all(c.count("<") == c.count(">") for c in chunks), chunks
