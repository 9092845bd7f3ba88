"""Markdown -> mrkdwn conversion and message splitting."""

from __future__ import annotations

import pytest

from adapters.slack.mrkdwn import code_blocks, split_message, to_mrkdwn, unescape_slack


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


def test_short_text_is_one_message() -> None:
    assert split_message("hello", 10) == ["hello"]


def test_split_at_line_boundaries_within_limit() -> None:
    text = "\n".join(f"line {i:02d}" for i in range(30))
    chunks = split_message(text, 50)
    assert all(len(c) <= 50 for c in chunks)
    assert "\n".join(chunks) == text
    assert all(c.startswith("line ") for c in chunks)


def test_split_long_line_at_spaces() -> None:
    text = " ".join(["word"] * 100)
    chunks = split_message(text, 60)
    assert all(len(c) <= 60 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_split_does_not_cut_an_escape() -> None:
    text = "x" * 10 + "&amp;" + "y" * 30  # a plain cut at 12 characters would fall inside "&amp;"
    chunks = split_message(text, 20)
    assert all(len(c) <= 20 for c in chunks)
    assert "".join(chunks) == text
    assert all(c.count("&") == c.count("&amp;") for c in chunks)


def test_split_code_block_is_closed_and_reopened() -> None:
    code = "\n".join(f"print({i})" for i in range(40))
    text = f"Here:\n```\n{code}\n```\nBye"
    chunks = split_message(text, 80)
    assert len(chunks) > 2
    for chunk in chunks:
        assert len(chunk) <= 80
        assert chunk.count("```") % 2 == 0, chunk
    joined = "\n".join(chunks)
    for i in range(40):
        assert f"print({i})" in joined
    assert chunks[-1].endswith("Bye")


def test_code_blocks_are_extracted_with_language() -> None:
    md = "a\n```html\n<p>x</p>\n```\nb\n```\nplain\n```"
    blocks = code_blocks(md)
    assert [(b.language, b.code) for b in blocks] == [("html", "<p>x</p>\n"), ("", "plain\n")]
