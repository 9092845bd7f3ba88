"""The structure of the model's Markdown: its code blocks, and cutting it into messages of a size limit.

Cuts fall between paragraphs and code blocks when they can, else between lines, else between words,
and only a single enormous word is cut by characters. A code block cut in two becomes two fenced
blocks with the same language, so each message still renders on its own. Lengths are counted in
UTF-16 code units, which is what Telegram counts and never less than a character count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Block", "CodeBlock", "blocks", "code_blocks", "split", "utf16_length"]

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*$")
_LINK = re.compile(r"\[[^\]\n]+\]\([^)\s]+\)")


@dataclass(frozen=True)
class Block:
    kind: Literal["text", "code"]
    language: str  # of a code block; "" for text
    body: str


@dataclass(frozen=True)
class CodeBlock:
    language: str
    code: str


def blocks(markdown: str) -> list[Block]:
    """Text and fenced code blocks in order; a fence still open at the end runs to the end."""
    out: list[Block] = []
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
            out.append(Block("text", "", "\n".join(text)))
            text = []
        fence, language = m.group(1), m.group(2)
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence (or the end)
        out.append(Block("code", language, "\n".join(body)))
    if text:
        out.append(Block("text", "", "\n".join(text)))
    return out


def code_blocks(markdown: str) -> list[CodeBlock]:
    return [CodeBlock(b.language, b.body) for b in blocks(markdown) if b.kind == "code"]


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fits(markdown: str, limit: int) -> bool:
    return utf16_length(markdown) <= limit


def _units(markdown: str, limit: int) -> list[str]:
    """Markdown pieces no bigger than `limit` each: code blocks and paragraphs, cut further if needed."""
    units: list[str] = []
    for block in blocks(markdown):
        if block.kind == "code":
            units.extend(_split_code(block.language, block.body, limit))
        else:
            for para in re.split(r"\n[ \t]*\n", block.body):
                if para.strip():
                    units.extend(_split_text(para, limit))
    return units


def _split_code(language: str, code: str, limit: int) -> list[str]:
    fence = "```"
    overhead = len(fence) * 2 + len(language) + 2
    pieces: list[str] = []
    current: list[str] = []
    for line in code.split("\n"):
        if utf16_length(line) > limit - overhead:  # one enormous line: hard cut
            if current:
                pieces.append("\n".join(current))
                current = []
            *full, line = _hard_cut(line, limit - overhead)
            pieces.extend(full)
        if current and utf16_length("\n".join([*current, line])) > limit - overhead:
            pieces.append("\n".join(current))
            current = []
        current.append(line)
    if current or not pieces:
        pieces.append("\n".join(current))
    return [f"{fence}{language}\n{piece}\n{fence}" for piece in pieces]


def _words(text: str) -> list[str]:
    """`text` cut at its spaces, except those inside a link `[label](url)`: a link cut in two would
    show its markup as text in both messages."""
    links = [m.span() for m in _LINK.finditer(text)]
    words, start = [], 0
    for i, ch in enumerate(text):
        if ch == " " and not any(a < i < b for a, b in links):
            words.append(text[start:i])
            start = i + 1
    words.append(text[start:])
    return words


def _split_text(text: str, limit: int) -> list[str]:
    if _fits(text, limit):
        return [text]
    cuts = (
        ("\n", text.split("\n")),
        (" ", _words(text)),
        (" ", text.split(" ")),  # a link longer than a message is cut at its own spaces after all
    )
    for separator, parts in cuts:
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


def split(markdown: str, limit: int) -> list[str]:
    """Markdown chunks of at most `limit` UTF-16 units; [] for blank text. Short text is returned as is."""
    if not markdown.strip():
        return []
    if _fits(markdown, limit):
        return [markdown]
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
    return chunks
