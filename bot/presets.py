"""The preset jobs (/ocr, /table, /code, /describe, /find) and their prompts, in one place.

The prompts are shared by both model families except where they answer differently: grounding
(Qwen2.5-VL gives pixels of the resized input, Qwen3-VL relative 0-1000 coordinates; the prompt
names the system each was trained on, as `engine.arch.ModelArch.coordinates` says).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace

from bot.drawing import draw_marks, oriented_size
from bot.grounding import describe_marks, locate
from bot.i18n import N_, _, translate
from bot.language import Language
from bot.messages import Answer, Document, Notice, Picture, Reply, Text
from bot.tables import find_tables, table_to_csv
from engine.arch import Coordinates, ModelArch

__all__ = [
    "PRESETS",
    "Preset",
    "extract_html",
    "found_replies",
    "html_replies",
    "preset_named",
    "table_replies",
]

log = logging.getLogger(__name__)

MAX_ARGUMENT = 200
MAX_CSV_FILES = 5


@dataclass(frozen=True)
class Preset:
    name: str  # the command, without the slash
    description: str  # English, marked for translation
    prompt_template: str  # "{argument}" is replaced by the command's argument
    usage: str = ""  # the argument's placeholder in help, e.g. "THING"; empty when none is taken
    # (coordinates, template) where the architecture's grounding coordinates need their own wording
    per_coordinates: tuple[tuple[Coordinates, str], ...] = ()
    example: str = ""  # an example invocation for the docs and help

    @property
    def needs_argument(self) -> bool:
        return bool(self.usage)

    def prompt(
        self,
        arch: ModelArch,
        argument: str = "",
        *,
        picture: int | None = None,
        pictures: int = 1,
        language: Language = Language.EN,
    ) -> str:
        """The question sent to the model. When the question carries several pictures, `picture` names
        the one to work on; without it the job is done for each of the `pictures`. A user who does not
        speak English gets the answer in their language, asked for in that language (`ANSWER_LANGUAGE`)."""
        template = dict(self.per_coordinates).get(arch.coordinates, self.prompt_template)
        text = template.replace("{argument}", _clean_argument(argument))
        if language is not Language.EN:
            text = f"{text}\n{translate(ANSWER_LANGUAGE, language)}"
        if picture is not None:
            return f"Look only at Picture {picture}. {text}"
        if pictures > 1:
            lead = f"Do this for each of the {pictures} pictures, one after the other, headed Picture 1, Picture 2, ..."
            return f"{lead}: {text}"
        return text


# Added to a preset's prompt, in the user's language, for users who do not speak English (the English
# prompts need no such line). Text in the picture is still copied as it is written.
ANSWER_LANGUAGE = N_("Answer in English; copy any text from the picture exactly as written, without translating it.")


def _clean_argument(argument: str) -> str:
    # The argument sits inside double quotes in the prompt: keep it one line, unquoted, bounded.
    text = " ".join(argument.split()).replace('"', "'")
    return text[:MAX_ARGUMENT]


_GROUNDING_QWEN25 = (
    'Locate every instance of "{argument}" in this picture. Report the bounding box of each one in JSON format, '
    'using absolute pixel coordinates of the image: [{"bbox_2d": [x1, y1, x2, y2], "label": "{argument}"}]. '
    'If there is none, answer "Not found." and say briefly what the picture shows.'
)
_GROUNDING_QWEN3 = (
    'Locate every instance of "{argument}" in this picture. Report the bbox coordinates of each one in JSON '
    'format, using relative coordinates from 0 to 1000: [{"bbox_2d": [x1, y1, x2, y2], "label": "{argument}"}]. '
    'If there is none, answer "Not found." and say briefly what the picture shows.'
)

PRESETS: tuple[Preset, ...] = (
    Preset(
        name="ocr",
        description=N_("Read all the text of the picture"),
        prompt_template=(
            "Read all the text in this picture, in reading order. Keep the line breaks, and keep the layout "
            "where it carries meaning (columns, indentation, lists, label and value pairs). Copy the text exactly "
            "as written, in its original language: do not translate, correct or explain it. Answer with the text only."
        ),
        example="/ocr",
    ),
    Preset(
        name="table",
        description=N_("Tables in the picture as Markdown and a CSV file"),
        prompt_template=(
            "Convert every table in this picture to a GitHub Markdown table (pipe syntax, not HTML). Copy each "
            "cell's text exactly, keep the order of rows and columns, leave empty cells empty, and repeat the text "
            "of a merged cell in every cell it covers. If there are several tables, put a short title line before "
            "each. Answer with the tables only."
        ),
        example="/table",
    ),
    Preset(
        name="code",
        description=N_("HTML and CSS for a screenshot or mock-up, also as a file"),
        prompt_template=(
            "Write the HTML and CSS that reproduce this screenshot or mock-up as closely as possible: layout, "
            "spacing, colours, fonts and all the visible text. Answer with ONE complete, self-contained HTML "
            "document in a single ```html code block: the CSS in a <style> element in <head>, no JavaScript, no "
            "external files; use plain coloured boxes where there are photos or icons."
        ),
        example="/code",
    ),
    Preset(
        name="describe",
        description=N_("A structured description of the picture"),
        prompt_template=(
            "Describe this picture in a structured way, under these headings:\n"
            "Type: what kind of picture it is (photo, screenshot, document, chart, ...).\n"
            "Summary: one or two sentences.\n"
            "Main elements: a bullet list of what is shown and where.\n"
            "Text: the important visible text, quoted exactly.\n"
            "Details: numbers, states, warnings or errors worth noticing.\n"
            "Say so when something is unclear or not visible."
        ),
        example="/describe",
    ),
    Preset(
        name="find",
        description=N_("Locate something and mark it on the picture"),
        prompt_template=_GROUNDING_QWEN25,
        usage=N_("THING"),
        per_coordinates=(
            (Coordinates.RESIZED_PIXELS, _GROUNDING_QWEN25),
            (Coordinates.RELATIVE_1000, _GROUNDING_QWEN3),
        ),
        example=N_("/find the serial number label"),
    ),
)

_BY_NAME = {preset.name: preset for preset in PRESETS}


def preset_named(name: str) -> Preset | None:
    return _BY_NAME.get(name)


# --- /code: the HTML document in the answer ------------------------------------------------------

_FENCE = re.compile(r"```([a-zA-Z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_DOCUMENT = re.compile(r"(<!doctype html.*?</html>|<html.*?</html>)", re.DOTALL | re.IGNORECASE)
_MARKUP = re.compile(r"<(html|body|div|head|main|section|!doctype)\b", re.IGNORECASE)


def extract_html(answer: str) -> str | None:
    """A complete HTML document from the answer (a ```html block, a bare document, or loose markup
    wrapped into one, with any separate ```css block inlined); None when there is no markup."""
    blocks = [(lang.lower(), body.strip()) for lang, body in _FENCE.findall(answer)]
    css = "\n".join(body for lang, body in blocks if lang == "css")
    html = next((body for lang, body in blocks if lang in ("html", "htm", "xml")), None)
    if html is None:
        html = next((body for lang, body in blocks if _MARKUP.search(body)), None)
    if html is None:
        match = _DOCUMENT.search(answer)
        html = match.group(1) if match else (answer.strip() if _MARKUP.match(answer.strip()) else None)
    if not html:
        return None
    if not re.search(r"<html\b", html, re.IGNORECASE):
        html = f'<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n</head>\n<body>\n{html}\n</body>\n</html>'
    if css:
        style = f"<style>\n{css}\n</style>\n"
        head_end = re.search(r"</head>", html, re.IGNORECASE)
        html = html[: head_end.start()] + style + html[head_end.start() :] if head_end else style + html
    return html + ("" if html.endswith("\n") else "\n")


# --- what each preset sends besides (or instead of) the plain answer -------------------------------


def table_replies(answer: Answer) -> list[Reply]:
    """The answer, then each table in it as a CSV file."""
    tables = find_tables(answer.text)
    if not tables:
        return [answer, Notice(_("No table was found in the answer, so there is no CSV file."))]
    replies: list[Reply] = [answer]
    shown = tables[:MAX_CSV_FILES]
    for index, table in enumerate(shown, start=1):
        name = "table.csv" if len(shown) == 1 else f"table-{index}.csv"
        caption = _("Table as CSV ({rows} rows).").format(rows=max(0, len(table) - 1))
        replies.append(Document(filename=name, data=table_to_csv(table), mime_type="text/csv", caption=caption))
    if len(tables) > len(shown):
        replies.append(Notice(_("Only the first {sent} of {count} tables were sent as CSV files.").format(sent=len(shown), count=len(tables))))
    return replies


def html_replies(answer: Answer) -> list[Reply]:
    """The answer, then its HTML as a file."""
    html = extract_html(answer.text)
    if html is None:
        return [answer, Notice(_("The answer has no HTML, so there is no file."))]
    caption = _("The HTML as a file: open it in a browser.")
    return [replace(answer, files_follow=True), Document(filename="page.html", data=html.encode(), mime_type="text/html", caption=caption)]


def found_replies(
    answer: Answer, picture: bytes, *, arch: ModelArch, thing: str, min_pixels: int, max_pixels: int
) -> list[Reply]:
    """/find: the answer becomes the list of boxes in the ORIGINAL picture's pixels, followed by the
    picture with them drawn on it. Blocking (decodes and draws): run it in a worker thread."""
    thing = " ".join(thing.split())
    try:
        size = oriented_size(picture)
    except OSError as exc:
        log.error("the picture for turn %s cannot be opened to draw on: %s", answer.turn_id, exc)
        error = _("The picture could not be opened to mark what was found; please send it again.")
        return [answer, Text(error, kind="error")]
    marks = locate(
        answer.text, arch=arch, original_size=size, min_pixels=min_pixels, max_pixels=max_pixels, default_label=thing
    )
    if not marks:
        said = " ".join(answer.text.split())
        said = said if len(said) <= 500 else said[:499] + "…"
        text = _('Nothing was located for "{thing}".').format(thing=thing)
        if said:
            text += "\n" + _("The model said: {said}").format(said=said)
        return [replace(answer, text=text)]
    width, height = size
    listed = replace(
        answer,
        text=_('Located "{thing}" ({count}), in pixels of the original {width}x{height} picture:').format(
            thing=thing, count=len(marks), width=width, height=height
        )
        + "\n"
        + describe_marks(marks),
    )
    try:
        drawn = draw_marks(picture, marks)
    except (OSError, ValueError) as exc:
        log.error("drawing %d mark(s) for turn %s failed: %s", len(marks), answer.turn_id, exc)
        error = _("The boxes could not be drawn on the picture; the list above has their coordinates.")
        return [listed, Text(error, kind="error")]
    caption = _('"{thing}" marked on the picture.').format(thing=thing if len(thing) <= 60 else thing[:59] + "…")
    return [listed, Picture(filename=f"find-{_slug(thing)}.png", data=drawn, mime_type="image/png", caption=caption)]


def _slug(text: str) -> str:
    slug = "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())
    return slug[:40].strip("-") or "object"
