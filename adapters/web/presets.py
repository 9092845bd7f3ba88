"""The preset buttons: common jobs as ready prompts, or as commands when the service has them; labelled
in the browser's language (the request's, see adapters/web/app.py)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bot.i18n import N_, _

__all__ = ["PRESETS", "Preset", "presets"]


@dataclass(frozen=True)
class Preset:
    command: str  # the command that does this job, used when the service offers it
    label: str
    prompt: str  # "___" marks the part the user fills in


PRESETS: tuple[Preset, ...] = (
    Preset("ocr", N_("Read the text"), N_("Read all the text in this picture, keeping its lines and layout.")),
    Preset("table", N_("Table to Markdown"), N_("Turn the table in this picture into a Markdown table.")),
    Preset("describe", N_("Describe"), N_("Describe this picture in detail.")),
    Preset("code", N_("Screenshot to HTML"), N_("Write the HTML and CSS that reproduce this screenshot, in one code block.")),
    Preset(
        "find",
        N_("Locate an object"),
        N_("Where is the ___ in this picture? Give its bounding box as [x1, y1, x2, y2] pixel coordinates."),
    ),
)


def presets(commands: Collection[str]) -> list[dict[str, str]]:
    """What each button puts in the message box: "/ocr" when /ocr exists, else the prompt."""
    out = []
    for preset in PRESETS:
        if preset.command in commands:
            text = f"/{preset.command} ___" if preset.command == "find" else f"/{preset.command}"
        else:
            text = _(preset.prompt)
        out.append({"id": preset.command, "label": _(preset.label), "text": text})
    return out
