"""The commands every adapter offers, and the help text that lists them."""

from __future__ import annotations

from dataclasses import dataclass

from bot.presets import PRESETS

__all__ = ["COMMANDS", "CommandSpec", "help_text", "parse_command"]


@dataclass(frozen=True)
class CommandSpec:
    name: str  # without the slash
    description: str
    usage: str = ""


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", "Introduction and examples"),
    CommandSpec("help", "Commands and example questions"),
    CommandSpec("clear", "Start this conversation afresh"),
    CommandSpec("name", "Name this conversation", "TITLE"),
    CommandSpec("undo", "Remove the last question from the conversation"),
    CommandSpec("retry", "Answer the last question again"),
    CommandSpec("export", "Download this conversation as JSON"),
    CommandSpec("forget", "Erase your messages, the answers and your pictures here", "[confirm]"),
    CommandSpec("status", "Queue position and model state"),
    CommandSpec("good", "Mark the last answer as helpful"),
    CommandSpec("bad", "Mark the last answer as not helpful, for the helpdesk to review"),
    *(CommandSpec(preset.name, preset.description, preset.usage) for preset in PRESETS),
)

EXAMPLES = (
    "What does this error mean and how do I fix it?",
    "Read the text in this picture.",
    "Turn the table in this screenshot into Markdown.",
    "Describe this picture.",
    "Write the HTML and CSS for this mock-up.",
    "Where is the serial number in this photo?",
    *(preset.example for preset in PRESETS if preset.usage),
)


def help_text() -> str:
    lines = [
        "Send me a photo or screenshot and ask about it. Follow-up questions can refer to earlier pictures;",
        "send several pictures in one message to compare them.",
        "The presets (/ocr, /table, /code, /describe, /find) work on the picture sent with the command,",
        "or else on the last picture of this conversation.",
        "",
        "Commands:",
    ]
    for spec in COMMANDS:
        usage = f" {spec.usage}" if spec.usage else ""
        lines.append(f"/{spec.name}{usage} - {spec.description}")
    lines += ["", "Examples:"] + [f"- {example}" for example in EXAMPLES]
    return "\n".join(lines)


def parse_command(text: str) -> tuple[str, str] | None:
    """'/name  My chat' -> ('name', 'My chat'); None when the text is not a command."""
    stripped = text.strip()
    if not stripped.startswith("/") or len(stripped) < 2:
        return None
    head, _, rest = stripped[1:].partition(" ")
    if "/" in head:  # a path such as /var/log is a question, not a command
        return None
    return head.lower(), rest.strip()
