"""What the bot says to users, in one place so every platform words it the same, in the user's language.

Platform adapters style these texts (an error may get a warning sign, a notice italics) but never
reword them. Operator log messages are not here: they stay next to the code that logs them.

Each constant is English marked with `N_()`; say it with `_(CONSTANT)` so it comes out in the
user's language (`bot.i18n`). The functions translate themselves. A new text needs a Chinese
translation too: `make messages`, fill in bot/locale/zh_CN/LC_MESSAGES/vlmbot.po, `make catalogs`.
"""

from __future__ import annotations

import math

from bot.i18n import N_, _, ngettext
from bot.stored_files import FileCounts
from engine.interface import EngineHealth
from engine.quantization import NO_QUANTIZATION

__all__ = [
    "ACK_PICTURES",
    "ANSWER_INTERRUPTED",
    "CLEARED",
    "CLEARED_WHILE_WAITING",
    "CODE_FILE_CAPTION",
    "DOWNLOAD_FAILED",
    "EMPTY_ANSWER",
    "ENGINE_SENTENCES",
    "FAILED",
    "FILES_NEED_A_THREAD",
    "FILES_READ_MISSING",
    "INTERNAL_ERROR",
    "MISSING_PICTURE",
    "NOT_A_VOTE",
    "NOT_PICTURES",
    "NO_PICTURE",
    "PDF_ABSURD_PAGES",
    "PDF_DAMAGED",
    "PDF_EMPTY",
    "PDF_GONE",
    "PDF_NO_PAGES",
    "PDF_NO_SUCH_PAGE",
    "PDF_PASSWORD",
    "PDF_TOO_LARGE",
    "PDF_TOO_SLOW",
    "PRESENT_FAILED",
    "SHUTTING_DOWN",
    "STOPPED",
    "VIDEO_OVER_WEB_LIMIT",
    "VOTE_FAILED",
    "WORKING",
    "download_failed",
    "forget_done",
    "forget_preview",
    "engine_sentence",
    "UNNAMED_FILE",
    "UNNAMED_PDF",
    "UNNAMED_SCREENSHOT",
    "UNNAMED_VIDEO",
    "file_label",
    "file_list",
    "not_pictures",
    "over_download_limit",
    "page_list",
    "pdf_gone",
    "pdf_no_such_page",
    "pdf_over_limit",
    "pdf_pages_left_out",
    "pdf_pages_read",
    "pdf_problem",
    "queued",
    "reading",
    "refusal",
    "screenshot_too_long",
    "status_text",
    "too_big",
    "video_refused",
]

# --- the conversation ---------------------------------------------------------------------------
ACK_PICTURES = N_("Got it - what would you like to know?")
SHUTTING_DOWN = N_("The bot is restarting; please send your message again in a minute.")
CLEARED = N_("Cleared. The next message starts a new conversation.")
CLEARED_WHILE_WAITING = N_("Not answered: this conversation was cleared while the question waited.")
NOT_A_VOTE = N_("This button is not valid any more.")
VOTE_FAILED = N_("Your vote could not be saved; please try again.")
MISSING_PICTURE = N_("A picture of this conversation is missing from storage; please /clear and send it again.")
INTERNAL_ERROR = N_("Something went wrong while answering; please try again.")
NO_PICTURE = N_("There is no picture to work on: send one with the command, or send a picture first.")
STOPPED = N_("Stopped: this conversation was cleared.")
ANSWER_INTERRUPTED = N_("The answer was interrupted; send /retry to try again.")
FIND_NEEDS_A_PICTURE = N_("/find marks things on a still picture, not on a video or an animation; please send a screenshot or a photo.")
PRESENT_FAILED = N_("The answer is above, but making its file or picture failed.")

# --- replies while and after answering ----------------------------------------------------------
WORKING = N_("⏳ Working on it…")
EMPTY_ANSWER = N_("The model gave an empty answer; try /retry or ask differently.")
FAILED = N_("Something went wrong while answering; please try again.")
CODE_FILE_CAPTION = N_("The code from the answer as a file.")
FILES_NEED_A_THREAD = N_("I can send files only into a thread: mention me with the command in a thread instead.")

# --- what comes in ------------------------------------------------------------------------------
NOT_PICTURES = N_(
    "I can only read pictures (PNG, JPEG, WebP, GIF...), PDFs and short videos (MP4, MOV, WebM), so I skipped "
    "{names}. Send a photo, a screenshot, a PDF or a screen recording and ask about it."
)
# A video that cannot be watched; {label} is `video_label`, {limit} the setting.
VIDEO_EMPTY = N_("{label} is empty or has no frames; please send the recording again.")
VIDEO_TOO_BIG = N_("{label} is over the {limit} limit for videos; please send a shorter clip.")
VIDEO_TOO_LONG = N_("{label} is longer than {limit} seconds; please trim it to the part that matters and send it again.")
VIDEO_TOO_MANY_PIXELS = N_("{label} is too large a video to read; please record it at a lower resolution.")
VIDEO_NO_PICTURE = N_("{label} has sound but no picture; please send a screen recording or a screenshot.")
VIDEO_DAMAGED = N_("{label} is not a video I can read or is damaged; please send an MP4, MOV, WebM or GIF.")
VIDEO_TOO_SLOW = N_("{label} took too long to read; please send a shorter or smaller clip.")
# A video beside others that already fill the message's pictures budget (`bot.picture_inputs`).
VIDEO_LEFT_OUT = N_(
    "{label} was left out: with the other files of this message it is more than I can read at once; "
    "please send it in a message of its own."
)
# The web chat holds a video to the pictures' size limit (adapters/web/uploads.py keeps one ceiling per request).
VIDEO_OVER_WEB_LIMIT = N_("{label} is over the {limit} limit for files on the web chat; please send a shorter clip.")
DOWNLOAD_FAILED = N_("I couldn't download {name}; please send it again.")
FILES_READ_MISSING = N_(
    "I can't open files on this Slack workspace: the app is missing the files:read permission. "
    "Ask your Slack admin to add it and reinstall the app."
)


# --- the engine's own sentences (engine/ does not translate; the core says them in the user's language)
ENGINE_SENTENCES = (
    N_("The bot is busy right now; please try again in a moment."),
    N_("That took too long and was stopped; please try again or ask something shorter."),
    N_("The model server is unavailable; please try again shortly."),
    N_("The picture is too large for the GPU's memory right now; please send a smaller or cropped picture."),
    N_("Something went wrong while answering; please try again."),
    N_("The picture was read at reduced resolution because the GPU ran short of memory."),
    N_("The connection to the model server was lost in the middle of the answer; please send /retry."),
    N_("The model server could not process this question; please try again, or /clear to start afresh."),
)


def engine_sentence(text: str) -> str:
    """An engine's user message or note in the user's language; one it words itself (a remote server's
    refusal) stays as it is."""
    return _(text) if text in ENGINE_SENTENCES else text


def queued(position: int) -> str:
    """The queue status; `position` 1 means next."""
    if position <= 1:
        return _("⏳ You are next in the queue.")
    ahead = position - 1
    return ngettext(
        "⏳ Waiting in the queue: {ahead} question ahead of yours.", "⏳ Waiting in the queue: {ahead} questions ahead of yours.", ahead
    ).format(ahead=ahead)


def reading(pictures: int, videos: int = 0, pages: int = 0) -> str:
    """The status while the model reads a question with these pictures, videos and PDF pages (none: text only)."""
    if videos > 0 and (pictures > 0 or pages > 0):
        return _("⏳ Reading the pictures and watching the video…") if videos == 1 else _("⏳ Reading the pictures and watching the videos…")
    if videos == 1:
        return _("⏳ Watching the video…")
    if videos > 1:
        return _("⏳ Watching the {count} videos…").format(count=videos)
    if pages > 0:
        return _("⏳ Reading the pages…") if pictures <= 0 else _("⏳ Reading the pages and pictures…")
    if pictures <= 0:
        return _(WORKING)
    if pictures == 1:
        return _("⏳ Reading the picture…")
    return _("⏳ Reading the {count} pictures…").format(count=pictures)


def refusal(user_id: str) -> str:
    """One line for someone the allowlist does not cover; their id is what the operator needs."""
    return _("Sorry, I'm not enabled for you here. Ask the bot's operator to add your user id ({user_id}) or this chat.").format(
        user_id=user_id
    )


def not_pictures(names: list[str]) -> str:
    return _(NOT_PICTURES).format(names=", ".join(names))


def video_refused(text: str, name: str | None, limit: str = "") -> str:
    """One line for a video that cannot be watched (`text`: one of the VIDEO_ texts)."""
    label = file_label(name, UNNAMED_VIDEO)
    return _(text).format(label=label, limit=limit)


def download_failed(name: str) -> str:
    return _(DOWNLOAD_FAILED).format(name=name or _("that picture"))


def over_download_limit(size: int, limit: int, platform: str) -> str:
    """A file over what the platform lets bots download (checked before trying)."""
    return _(
        "That file is {size:.1f} MB, and {platform} lets bots download at most {limit} MB. "
        "Please send a smaller picture, or send it as a photo."
    ).format(size=size / 1024**2, platform=platform, limit=math.ceil(limit / 1024**2))


def too_big(size: int, limit: int) -> str:
    return _("That file is {size:.1f} MB, over the {limit:.0f} MB limit; please send a smaller picture.").format(
        size=size / 1024 / 1024, limit=limit / 1024 / 1024
    )


# --- /forget and /status ------------------------------------------------------------------------


def forget_preview(where: str, turns: int, conversations: int, files: FileCounts, kept: int, votes: int) -> str:
    """What /forget confirm would erase of the user's on the platform called `where`; `kept`: the files of
    those messages that stay because messages that are kept use them."""
    listed = file_list(files)
    if listed and kept:
        listed += ngettext(
            " ({count} more stays: messages that are kept use it)", " ({count} more stay: messages that are kept use them)", kept
        ).format(count=kept)
    if not listed:
        kept_note = ngettext(
            " ({count} file in them stays: messages that are kept use it)",
            " ({count} files in them stay: messages that are kept use them)",
            kept,
        ).format(count=kept) if kept else ""
        if votes:
            text = _(
                "/forget confirm erases everything of yours from {where}: {turns} message(s) and the answers to them in "
                "{conversations} conversation(s){kept}, and your {votes} vote(s) on answers. "
                "Other people's messages stay. This cannot be undone."
            )
        else:
            text = _(
                "/forget confirm erases everything of yours from {where}: {turns} message(s) and the answers to them in "
                "{conversations} conversation(s){kept}. Other people's messages stay. This cannot be undone."
            )
        return text.format(where=where, turns=turns, conversations=conversations, kept=kept_note, votes=votes)
    if votes:
        text = _(
            "/forget confirm erases everything of yours from {where}: {turns} message(s) and the answers to them in "
            "{conversations} conversation(s), {files}, and your {votes} vote(s) on answers. "
            "Other people's messages stay. This cannot be undone."
        )
    else:
        text = _(
            "/forget confirm erases everything of yours from {where}: {turns} message(s) and the answers to them in "
            "{conversations} conversation(s), and {files}. Other people's messages stay. This cannot be undone."
        )
    return text.format(where=where, turns=turns, conversations=conversations, files=listed, votes=votes)


def forget_done(turns: int, conversations: int, files: FileCounts, votes: int) -> str:
    listed = file_list(files)
    if listed and votes:
        text = _(
            "Erased {turns} message(s) of yours and the answers to them in {conversations} conversation(s), and "
            "{files}; and {votes} vote(s) of yours on answers."
        )
    elif listed:
        text = _("Erased {turns} message(s) of yours and the answers to them in {conversations} conversation(s), and {files}.")
    elif votes:
        text = _(
            "Erased {turns} message(s) of yours and the answers to them in {conversations} conversation(s), and "
            "{votes} vote(s) of yours on answers."
        )
    else:
        text = _("Erased {turns} message(s) of yours and the answers to them in {conversations} conversation(s).")
    return text.format(turns=turns, conversations=conversations, files=listed, votes=votes)


def file_list(files: FileCounts) -> str:
    """"2 pictures, 1 PDF document and 1 recording": the kinds there are, in that order; "" for none."""
    parts = []
    if files.pictures:
        parts.append(ngettext("{count} picture", "{count} pictures", files.pictures).format(count=files.pictures))
    if files.pdfs:
        parts.append(ngettext("{count} PDF document", "{count} PDF documents", files.pdfs).format(count=files.pdfs))
    if files.videos:
        parts.append(ngettext("{count} recording", "{count} recordings", files.videos).format(count=files.videos))
    match parts:
        case []:
            return ""
        case [one]:
            return one
        case [first, second]:
            return _("{first} and {second}").format(first=first, second=second)
        case _:
            return _("{first}, {second} and {third}").format(first=parts[0], second=parts[1], third=parts[2])


def status_text(position: int | None, health: EngineHealth) -> str:
    """/status: the user's question (None: none waiting; 0: being answered; else its place) and the model."""
    if position is None:
        mine = _("You have no question waiting.")
    elif position == 0:
        mine = _("Your answer is being generated.")
    else:
        mine = _("Your question is number {position} in the queue.").format(position=position)
    state = _("ready") if health.ok else _("unavailable ({detail})").format(detail=health.detail)
    # The method's name (nf4, int8, awq) is technical and stays; "none" is said in words.
    if health.quantization == NO_QUANTIZATION.description:
        quantization = _("quantization none")
    else:
        quantization = _("quantization {method}").format(method=health.quantization)
    return _(
        "{mine}\nModel: {model} on {device} ({dtype}, {attention}, {quantization}), {state}.\n"
        "Queue: {waiting} waiting, {running} generating."
    ).format(
        mine=mine,
        model=health.model,
        device=health.device,
        dtype=health.dtype,
        attention=health.attention,
        quantization=quantization,
        state=state,
        waiting=health.queue_depth,
        running=health.running,
    )


# --- PDFs and long screenshots (each `{name}` is `file_label`) -------------------------------------
PDF_EMPTY = N_("{name} is empty; please send the PDF again.")
PDF_NO_PAGES = N_("{name} has no pages to read; please check the file and send it again.")
PDF_PASSWORD = N_("{name} is protected by a password; please send a copy without one, or screenshots of the pages.")
PDF_DAMAGED = N_("{name} looks damaged, so I couldn't open it; please export it again or send screenshots of the pages.")
PDF_TOO_SLOW = N_("{name} took too long to open, so I skipped it; please send the pages you need as screenshots.")
PDF_TOO_LARGE = N_("{name} is too large to open; please send only the pages you need, or screenshots of them.")
PDF_ABSURD_PAGES = N_("The pages of {name} have sizes I can't render; please send screenshots of them instead.")


# What a reply calls a file that came without a name (`file_label`).
UNNAMED_FILE = N_("The file")
UNNAMED_PDF = N_("The PDF")
UNNAMED_SCREENSHOT = N_("The screenshot")
UNNAMED_VIDEO = N_("The video")


def file_label(name: str | None, unnamed: str = UNNAMED_FILE) -> str:
    """A file as a reply names it: its name in the language's quotes, else `unnamed` (an UNNAMED_ text)."""
    if name:
        return _("'{name}'").format(name=name)
    return _(unnamed)


def pdf_problem(text: str, name: str) -> str:
    """One of the PDF_ texts, in the user's language, about the file `name` (`file_label`)."""
    return _(text).format(name=name)


def pdf_over_limit(name: str, size: int, limit: int) -> str:
    return _("{name} is {size:.1f} MB, over the {limit:.0f} MB limit; please send only the pages you need.").format(
        name=name, size=size / 1024**2, limit=limit / 1024**2
    )


def page_list(spans: list[str]) -> str:
    """["1-3", "5"] -> "pages 1-3 and 5"; ["4"] -> "page 4"."""
    if len(spans) == 1 and "-" not in spans[0]:
        return _("page {number}").format(number=spans[0])
    if len(spans) == 1:
        return _("pages {spans}").format(spans=spans[0])
    return _("pages {spans} and {last}").format(spans=", ".join(spans[:-1]), last=spans[-1])


def pdf_pages_read(name: str, pages: str, total: int, max_pages: int, *, shared: bool = False) -> str:
    """`pages` from `page_list`; said when a PDF has more pages than were read. `max_pages`: the most this
    message could read of it; `shared` when the message's other files left it fewer than a PDF alone gets
    (`bot.picture_inputs`), so the next question, naming pages of the kept PDF, may read more."""
    if shared:
        return ngettext(
            "{name} has {total} pages; I read {pages}. Only {max_pages} page fit beside the other files of this "
            "message; name others in your next question (e.g. \"page 3\") to read them.",
            "{name} has {total} pages; I read {pages}. Up to {max_pages} pages fit beside the other files of this "
            "message; name others in your next question (e.g. \"pages 3-5\") to read them.",
            max_pages,
        ).format(name=name, total=total, pages=pages, max_pages=max_pages)
    return _(
        "{name} has {total} pages; I read {pages}. Name others in your question "
        "(e.g. \"pages 3-5\"; up to {max_pages} at a time) to read them."
    ).format(name=name, total=total, pages=pages, max_pages=max_pages)


PDF_NO_SUCH_PAGE = N_("{name} has only {total} pages, so I can't read {pages}.")
PDF_GONE = N_("I no longer have {name}; please send it again to ask about {pages}.")


def pdf_no_such_page(name: str, pages: str, total: int) -> str:
    """A later question names pages beyond the length of the conversation's PDF (`pages` from `page_list`)."""
    return _(PDF_NO_SUCH_PAGE).format(name=name, total=total, pages=pages)


def pdf_gone(name: str, pages: str) -> str:
    """A later question names pages of a PDF whose file is no longer kept (sent before PDFs were kept)."""
    return _(PDF_GONE).format(name=name, pages=pages)


def pdf_pages_left_out(name: str, pages: str) -> str:
    return _("I left out {pages} of {name}: their page size can't be rendered.").format(pages=pages, name=name)


def screenshot_too_long(name: str, percent: int, tall: bool) -> str:
    if tall:
        text = _("{name} is too long to read whole; I read its top part ({percent}%). Send the rest as another screenshot to ask about it.")
    else:
        text = _(
            "{name} is too long to read whole; I read its left-hand part ({percent}%). Send the rest as another screenshot to ask about it."
        )
    return text.format(name=name, percent=percent)
