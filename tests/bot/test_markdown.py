"""Cutting Markdown into messages: at paragraphs, else lines, else words, code blocks fenced again."""

from __future__ import annotations

from bot.markdown import blocks, code_blocks, split


def test_a_long_paragraph_is_cut_between_lines() -> None:
    text = "\n".join(f"line {i:02d}" for i in range(30))
    chunks = split(text, 50)
    assert all(len(c) <= 50 for c in chunks) and all(c.startswith("line ") for c in chunks)
    assert "\n".join(chunks) == text


def test_a_long_line_is_cut_between_words() -> None:
    text = " ".join(["word"] * 100)
    chunks = split(text, 60)
    assert all(len(c) <= 60 for c in chunks) and " ".join(chunks) == text


def test_a_cut_code_block_is_fenced_again_in_every_piece() -> None:
    code = "\n".join(f"print({i})" for i in range(40))
    chunks = split(f"Here:\n\n```python\n{code}\n```\n\nBye", 80)
    assert len(chunks) > 2 and all(len(c) <= 80 for c in chunks)
    assert all(c.count("```") % 2 == 0 for c in chunks)
    assert "\n".join(b.code for c in chunks for b in code_blocks(c)) == code
    assert chunks[-1].endswith("Bye")


def test_blocks_and_code_blocks() -> None:
    md = "a\n```html\n<p>x</p>\n```\nb\n```\nplain\n```\nafter\n~~~\nopen fence"
    assert [(b.kind, b.language) for b in blocks(md)] == [
        ("text", ""), ("code", "html"), ("text", ""), ("code", ""), ("text", ""), ("code", "")]
    assert [(b.language, b.code) for b in code_blocks(md)] == [("html", "<p>x</p>"), ("", "plain"), ("", "open fence")]


def test_a_link_is_not_cut_between_the_words_of_its_label() -> None:
    link = "[a label with several words](https://x.io/p)"
    chunks = split("word " * 10 + link + " end", 80)  # the last space that fits lies inside the label
    assert all(len(c) <= 80 for c in chunks) and [c for c in chunks if link in c], chunks
    assert " ".join(chunks) == "word " * 10 + link + " end"


def test_a_link_longer_than_a_message_is_cut_after_all() -> None:
    link = "[" + " ".join(["label"] * 20) + "](https://x.io/p)"
    chunks = split(link, 50)
    assert all(len(c) <= 50 for c in chunks) and " ".join(chunks) == link
