"""Model Markdown -> Telegram HTML.

Every tag is emitted together with its closing tag and all text is escaped, so the output is
always well-formed for the Bot API's HTML parser, even for a half-generated answer (an unclosed
code fence renders as a code block to the end). Each chunk keeps its Markdown source so a chunk
the API still rejects can be resent as plain text. Rendering never makes the visible text longer
than its Markdown, so the renderer's split by the Markdown's length keeps each message in the limit.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from bot.markdown import blocks, utf16_length

__all__ = ["Chunk", "chunk", "notice", "render", "visible_length"]

_INLINE = [
    ("code", re.compile(r"(`+)(.+?)\1")),
    ("link", re.compile(r"\[([^\]\n]+)\]\(((?:https?|tg|mailto):[^)\s]+)\)")),
    ("b", re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")),
    ("b", re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")),
    ("s", re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")),
    ("i", re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")),
    ("i", re.compile(r"(?<!\w)_(?=[^\s_])(.+?)(?<=[^\s_])_(?!\w)")),
]
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Chunk:
    """One message: its HTML and the Markdown it came from (the plain-text fallback)."""

    html: str
    plain: str


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _inline(text: str) -> str:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        best: tuple[int, str, re.Match[str]] | None = None
        for kind, pattern in _INLINE:
            m = pattern.search(text, pos)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), kind, m)
        if best is None:
            break
        start, kind, m = best
        out.append(_esc(text[pos:start]))
        if kind == "code":
            out.append(f"<code>{_esc(m.group(2))}</code>")
        elif kind == "link":
            out.append(f'<a href="{html.escape(m.group(2), quote=True)}">{_inline(m.group(1))}</a>')
        else:
            out.append(f"<{kind}>{_inline(m.group(1))}</{kind}>")
        pos = m.end()
    out.append(_esc(text[pos:]))
    return "".join(out)


def _line(line: str) -> str:
    if m := re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line):
        return f"<b>{_inline(m.group(1))}</b>"
    if m := re.match(r"^(\s*)[-*+]\s+(.*)$", line):
        return f"{m.group(1)}• {_inline(m.group(2))}"
    if re.match(r"^\s*([-*_])(\s*\1){2,}\s*$", line):
        return "———"
    return _inline(line)


def _text_block(text: str) -> str:
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|"):  # a Markdown table reads best in monospace
            table = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                table.append(lines[i])
                i += 1
            out.append(f"<pre>{_esc(chr(10).join(table))}</pre>")
            continue
        if lines[i].lstrip().startswith(">"):
            quote = []
            while i < len(lines) and lines[i].lstrip().startswith(">"):
                quote.append(_line(lines[i].lstrip()[1:].lstrip()))
                i += 1
            out.append(f"<blockquote>{chr(10).join(quote)}</blockquote>")
            continue
        out.append(_line(lines[i]))
        i += 1
    return "\n".join(out)


def render(markdown: str) -> str:
    """Telegram HTML for model Markdown; always balanced and escaped."""
    parts = []
    for block in blocks(markdown):
        if block.kind == "code":
            cls = f' class="language-{_esc(block.language)}"' if block.language else ""
            parts.append(f"<pre><code{cls}>{_esc(block.body)}</code></pre>")
        else:
            parts.append(_text_block(block.body))
    return "\n".join(parts).strip("\n")


def chunk(markdown: str) -> Chunk:
    """One message's HTML, keeping its Markdown as the plain-text fallback."""
    return Chunk(render(markdown), markdown)


def notice(text: str) -> Chunk:
    """A note that belongs with the answer, in italics."""
    return Chunk(f"<i>{_esc(text)}</i>", text)


def visible_length(rendered: str) -> int:
    """Length the Bot API counts (text after entity parsing, in UTF-16 code units)."""
    return utf16_length(html.unescape(_TAG.sub("", rendered)))
