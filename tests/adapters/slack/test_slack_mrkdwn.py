"""Markdown -> mrkdwn conversion."""

from __future__ import annotations

import pytest

from adapters.slack.mrkdwn import to_mrkdwn, unescape_slack


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
