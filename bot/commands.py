"""The commands every adapter offers, and the help text that lists them."""

from __future__ import annotations

from dataclasses import dataclass

from bot.i18n import N_, _
from bot.presets import PRESETS

__all__ = ["COMMANDS", "CommandSpec", "help_text", "parse_command"]


@dataclass(frozen=True)
class CommandSpec:
    name: str  # without the slash
    description: str  # English, marked for translation: say it with _() or bot.i18n.translate
    usage: str = ""  # the argument's placeholder; a word in capitals is translated, [confirm] is typed as is


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", N_("Introduction and examples")),
    CommandSpec("help", N_("Commands and example questions")),
    CommandSpec("clear", N_("Start this conversation afresh")),
    CommandSpec("name", N_("Name this conversation"), N_("TITLE")),
    CommandSpec("undo", N_("Remove the last question from the conversation")),
    CommandSpec("retry", N_("Answer the last question again")),
    CommandSpec("export", N_("Download this conversation as JSON")),
    CommandSpec("forget", N_("Erase your messages, the answers and the files you sent here"), "[confirm]"),
    CommandSpec("status", N_("Queue position and model state")),
    CommandSpec("good", N_("Mark the last answer as helpful")),
    CommandSpec("bad", N_("Mark the last answer as not helpful, for the helpdesk to review")),
    *(CommandSpec(preset.name, preset.description, preset.usage) for preset in PRESETS),
)

EXAMPLES = (
    N_("What does this error mean and how do I fix it?"),
    N_("Read the text in this picture."),
    N_("Turn the table in this screenshot into Markdown."),
    N_("Describe this picture."),
    N_("Write the HTML and CSS for this mock-up."),
    N_("Where is the serial number in this photo?"),
    *(preset.example for preset in PRESETS if preset.usage),
)


def help_text() -> str:
    lines = [
        _("Send me a photo or screenshot, a PDF or a short screen recording (MP4, MOV, WebM) and ask about it."),
        _("Follow-up questions can refer to earlier pictures; send several pictures in one message to compare them."),
        _('A long PDF is read from its first pages; name others in your question, e.g. "pages 3-5".'),
        _("The presets (/ocr, /table, /code, /describe, /find) work on the picture sent with the command,"),
        _("or else on the last picture of this conversation."),
        "",
        _("Commands:"),
    ]
    for spec in COMMANDS:
        usage = f" {_(spec.usage)}" if spec.usage else ""
        lines.append(f"/{spec.name}{usage} - {_(spec.description)}")
    lines += ["", _("Examples:")] + [f"- {_(example)}" for example in EXAMPLES]
    return "\n".join(lines)


def parse_command(text: str) -> tuple[str, str] | None:
    """'/name  My chat' -> ('name', 'My chat'); None when the text is not a command."""
    stripped = text.strip()
    if not stripped.startswith("/") or len(stripped) < 2:
        return None
    head, _sep, rest = stripped[1:].partition(" ")
    if "/" in head:  # a path such as /var/log is a question, not a command
        return None
    return head.lower(), rest.strip()
