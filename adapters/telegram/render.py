"""Model Markdown -> Telegram HTML, and splitting long answers into messages Telegram accepts.

Every tag is emitted together with its closing tag and all text is escaped, so the output is
always well-formed for the Bot API's HTML parser, even for a half-generated answer (an unclosed
code fence renders as a code block to the end). Each chunk keeps its Markdown source so a chunk
the API still rejects can be resent as plain text.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

__all__ = ["Chunk", "CodeBlock", "LIMIT", "code_blocks", "render", "split", "visible_length"]

LIMIT = 4096  # Bot API: 1-4096 characters of message text after entity parsing

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*$")
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


@dataclass(frozen=True)
class CodeBlock:
    language: str
    code: str


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


def _blocks(markdown: str) -> list[tuple[str, str, str]]:
    """Split into ("code", language, code) and ("text", "", lines) blocks; an open fence runs to the end."""
    blocks: list[tuple[str, str, str]] = []
    lines = markdown.split("\n")
    text: list[str] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            text.append(lines[i])
            i += 1
            continue
        if text:
            blocks.append(("text", "", "\n".join(text)))
            text = []
        fence, language = m.group(1), m.group(2)
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence (or the end)
        blocks.append(("code", language, "\n".join(body)))
    if text:
        blocks.append(("text", "", "\n".join(text)))
    return blocks


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
    for kind, language, body in _blocks(markdown):
        if kind == "code":
            cls = f' class="language-{_esc(language)}"' if language else ""
            parts.append(f"<pre><code{cls}>{_esc(body)}</code></pre>")
        else:
            parts.append(_text_block(body))
    return "\n".join(parts).strip("\n")


def visible_length(rendered: str) -> int:
    """Length the Bot API counts (text after entity parsing, in UTF-16 code units)."""
    return _utf16(html.unescape(_TAG.sub("", rendered)))


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def code_blocks(markdown: str) -> list[CodeBlock]:
    return [CodeBlock(language, body) for kind, language, body in _blocks(markdown) if kind == "code"]


def _units(markdown: str, limit: int) -> list[str]:
    """Markdown pieces no bigger than `limit` each: code blocks and paragraphs, cut further if needed."""
    units: list[str] = []
    for kind, language, body in _blocks(markdown):
        if kind == "code":
            units.extend(_split_code(language, body, limit))
        else:
            for para in re.split(r"\n[ \t]*\n", body):
                if para.strip():
                    units.extend(_split_text(para, limit))
    return units


def _fits(markdown: str, limit: int) -> bool:
    # Rendering never makes the visible text longer than its Markdown source, and the source is
    # also the plain-text fallback, so measuring the source is enough.
    return _utf16(markdown) <= limit


def _split_code(language: str, code: str, limit: int) -> list[str]:
    fence = "```"
    overhead = len(fence) * 2 + len(language) + 2
    pieces: list[str] = []
    current: list[str] = []
    for line in code.split("\n"):
        if _utf16(line) > limit - overhead:  # one enormous line: hard cut
            if current:
                pieces.append("\n".join(current))
                current = []
            *full, line = _hard_cut(line, limit - overhead)
            pieces.extend(full)
        if current and _utf16("\n".join(current + [line])) > limit - overhead:
            pieces.append("\n".join(current))
            current = []
        current.append(line)
    if current or not pieces:
        pieces.append("\n".join(current))
    return [f"{fence}{language}\n{piece}\n{fence}" for piece in pieces]


def _split_text(text: str, limit: int) -> list[str]:
    if _fits(text, limit):
        return [text]
    for separator in ("\n", " "):
        parts = text.split(separator)
        if len(parts) > 1:
            out: list[str] = []
            current = ""
            for part in parts:
                candidate = f"{current}{separator}{part}" if current else part
                if current and not _fits(candidate, limit):
                    out.extend(_split_text(current, limit))
                    current = part
                else:
                    current = candidate
            if current:
                out.extend(_split_text(current, limit))
            return out
    # No separator left: cut by characters (markup in such a run is shown literally).
    return _hard_cut(text, limit)


def _hard_cut(text: str, limit: int) -> list[str]:
    pieces: list[str] = []
    start, size = 0, 0
    for i, ch in enumerate(text):
        width = 2 if ord(ch) > 0xFFFF else 1
        if size + width > limit:
            pieces.append(text[start:i])
            start, size = i, 0
        size += width
    pieces.append(text[start:])
    return pieces


def split(markdown: str, limit: int = LIMIT) -> list[Chunk]:
    """Chunks of at most `limit` characters, cut at paragraph or code-block boundaries when possible."""
    if not markdown.strip():
        return []
    chunks: list[str] = []
    current = ""
    for unit in _units(markdown, limit):
        candidate = f"{current}\n\n{unit}" if current else unit
        if current and not _fits(candidate, limit):
            chunks.append(current)
            current = unit
        else:
            current = candidate
    if current:
        chunks.append(current)
    return [Chunk(render(c), c) for c in chunks]
