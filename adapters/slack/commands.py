"""Slack command forms -> the core's "/name args" text.

Slack refuses slash commands inside threads, so commands are also accepted as text addressed to
the bot ("@bot clear" in a thread, plain "clear" in a DM), with or without a leading slash.
"""

from __future__ import annotations

from bot.commands import COMMANDS

__all__ = ["from_slash_command", "from_text"]

_NAMES = {spec.name: spec for spec in COMMANDS}


def from_text(text: str) -> str:
    """A message's text with the bot mention removed -> "/name args" when it is a command, else as is.

    A bare word is a command only alone ("clear") or, for commands that take an argument, with it
    ("name Printer issue"); so "clear this error?" stays a question. "/retry" always is a command."""
    stripped = text.strip()
    head, _, rest = stripped.partition(" ")
    rest = rest.strip()
    if stripped.startswith("/"):
        return stripped
    spec = _NAMES.get(head.lower())
    if spec is None:
        return text
    if not rest:
        return f"/{spec.name}"
    if spec.usage:
        return f"/{spec.name} {rest}"
    return text


def from_slash_command(text: str) -> str:
    """The text after "/vlmbot": a command name becomes "/name args", anything else is a question;
    empty text asks for help."""
    stripped = text.strip()
    if not stripped:
        return "/help"
    head, _, rest = stripped.lstrip("/").partition(" ")
    if head.lower() in _NAMES:
        return f"/{head.lower()} {rest.strip()}".rstrip()
    return stripped
