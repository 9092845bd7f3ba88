"""Markdown -> Telegram HTML rendering, escaping and splitting, checked with the stand-in's HTML parser."""

from __future__ import annotations

import pytest
from telegram.constants import MessageLimit

from adapters.telegram.render import Chunk, chunk, render, visible_length
from bot.markdown import code_blocks
from bot.markdown import split as split_markdown
from tests.adapters.telegram.botapi_standin import HtmlParseError, parse_html


def test_escapes_html_special_characters():
    out = render("if a < b && c > d then <div> & done")
    assert out == "if a &lt; b &amp;&amp; c &gt; d then &lt;div&gt; &amp; done"
    text, entities = parse_html(out)
    assert text == "if a < b && c > d then <div> & done" and entities == []


def test_inline_markup_becomes_entities():
    text, entities = parse_html(render("**bold** and *it* and `x<y` and [site](https://e.com/?a=1&b=2)"))
    assert text == "bold and it and x<y and site"
    assert [e["type"] for e in entities] == ["bold", "italic", "code", "text_link"]
    assert entities[-1]["url"] == "https://e.com/?a=1&b=2"


def test_snake_case_and_lone_markers_stay_literal():
    assert parse_html(render("use my_var_name and 2 * 3 * x and **unclosed"))[0] == (
        "use my_var_name and 2 * 3 * x and **unclosed"
    )


def test_code_block_keeps_content_and_language():
    md = "Here:\n```html\n<div class=\"a\">&nbsp;</div>\n```\nDone."
    text, entities = parse_html(render(md))
    assert '<div class="a">&nbsp;</div>' in text
    assert {"type": "pre", "language": "html"}.items() <= entities[0].items()


def test_unclosed_fence_while_streaming_is_still_valid_html():
    text, entities = parse_html(render("Start\n```python\nprint('<b>')"))
    assert "print('<b>')" in text and entities[0]["type"] == "pre"


def test_headings_lists_tables_quotes():
    out = render("# Title\n- one\n- two\n| a | b |\n|---|---|\n> quoted <x>")
    text, entities = parse_html(out)
    assert "• one" in text and "| a | b |" in text and "quoted <x>" in text
    assert {e["type"] for e in entities} == {"bold", "pre", "blockquote"}


@pytest.mark.parametrize(
    "bad",
    ["<b>x", "<br>", "a <b>x</i>", "<a>x</a>", "x < y", "</b>", '<span class="x">a</span>'],
)
def test_standin_rejects_what_telegram_rejects(bad):
    with pytest.raises(HtmlParseError):
        parse_html(bad)


LIMIT = MessageLimit.MAX_TEXT_LENGTH


def split(markdown: str) -> list[Chunk]:
    """The renderer's cut at Telegram's limit, each message as Telegram HTML."""
    return [chunk(c) for c in split_markdown(markdown, LIMIT)]


def test_short_answer_is_one_chunk():
    chunks = split("Hello **world**")
    assert len(chunks) == 1 and chunks[0].plain == "Hello **world**"


def test_long_answer_splits_at_paragraphs():
    paragraphs = [f"Paragraph {i}: " + "word " * 150 for i in range(12)]
    chunks = split("\n\n".join(paragraphs))
    assert len(chunks) > 1
    for piece in chunks:
        text, _ = parse_html(piece.html)
        assert len(text) <= LIMIT and visible_length(piece.html) == len(text)
        assert text.startswith("Paragraph ")  # every chunk starts at a paragraph boundary
    assert sum(c.plain.count("Paragraph") for c in chunks) == 12


def test_long_code_block_splits_into_valid_code_blocks():
    code = "\n".join(f"<p>line {i} &amp; more</p>" for i in range(600))
    chunks = split(f"Intro\n\n```html\n{code}\n```\n\nOutro")
    assert len(chunks) > 2
    joined = ""
    for piece in chunks:
        text, entities = parse_html(piece.html)
        assert len(text) <= LIMIT
        if "line" in text:
            assert any(e["type"] == "pre" for e in entities)
        joined += text + "\n"
    for i in (0, 299, 599):
        assert f"<p>line {i} &amp; more</p>" in joined


def test_single_huge_word_is_cut():
    chunks = split("x" * 10000)
    assert sum(len(c.plain) for c in chunks) == 10000 and all(len(c.plain) <= LIMIT for c in chunks)


def test_code_blocks_are_listed():
    blocks = code_blocks("a\n```py\nprint(1)\n```\nb\n```\nraw\n```")
    assert [(b.language, b.code) for b in blocks] == [("py", "print(1)"), ("", "raw")]


def test_utf16_length_counts_emoji_as_two():
    chunks = split("😀" * 3000)
    assert len(chunks) == 2
