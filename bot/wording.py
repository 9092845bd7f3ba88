"""What the bot says to users, in one place so every platform words it the same (and it can be translated).

Platform adapters style these texts (an error may get a warning sign, a notice italics) but never
reword them. Operator log messages are not here: they stay next to the code that logs them.
"""

from __future__ import annotations

import math

__all__ = [
    "ACK_PICTURES",
    "ANSWER_INTERRUPTED",
    "CLEARED",
    "CLEARED_WHILE_WAITING",
    "CODE_FILE_CAPTION",
    "DOWNLOAD_FAILED",
    "EMPTY_ANSWER",
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
    "PDF_NO_PAGES",
    "PDF_PASSWORD",
    "PDF_TOO_LARGE",
    "PDF_TOO_SLOW",
    "PRESENT_FAILED",
    "SHUTTING_DOWN",
    "STOPPED",
    "VOTE_FAILED",
    "WORKING",
    "download_failed",
    "not_pictures",
    "over_download_limit",
    "pdf_over_limit",
    "pdf_pages_left_out",
    "pdf_pages_read",
    "queued",
    "refusal",
    "screenshot_too_long",
    "too_big",
]

# --- the conversation ---------------------------------------------------------------------------
ACK_PICTURES = "Got it - what would you like to know?"
SHUTTING_DOWN = "The bot is restarting; please send your message again in a minute."
CLEARED = "Cleared. The next message starts a new conversation."
CLEARED_WHILE_WAITING = "Not answered: this conversation was cleared while the question waited."
NOT_A_VOTE = "This button is not valid any more."
VOTE_FAILED = "Your vote could not be saved; please try again."
MISSING_PICTURE = "A picture of this conversation is missing from storage; please /clear and send it again."
INTERNAL_ERROR = "Something went wrong while answering; please try again."
NO_PICTURE = "There is no picture to work on: send one with the command, or send a picture first."
STOPPED = "Stopped: this conversation was cleared."
ANSWER_INTERRUPTED = "The answer was interrupted; send /retry to try again."
PRESENT_FAILED = "The answer is above, but making its file or picture failed."

# --- replies while and after answering ----------------------------------------------------------
WORKING = "⏳ Working on it…"
EMPTY_ANSWER = "The model gave an empty answer; try /retry or ask differently."
FAILED = "Something went wrong while answering; please try again."
CODE_FILE_CAPTION = "The code from the answer as a file."
FILES_NEED_A_THREAD = "I can send files only into a thread: mention me with the command in a thread instead."

# --- what comes in ------------------------------------------------------------------------------
NOT_PICTURES = "I can only read pictures (PNG, JPEG, WebP, GIF...) and PDFs, so I skipped {names}. Send a photo or a screenshot and ask about it."
DOWNLOAD_FAILED = "I couldn't download {name}; please send it again."
FILES_READ_MISSING = (
    "I can't open files on this Slack workspace: the app is missing the files:read permission. "
    "Ask your Slack admin to add it and reinstall the app."
)


def queued(position: int) -> str:
    """The queue status; `position` 1 means next."""
    if position <= 1:
        return "⏳ You are next in the queue."
    ahead = position - 1
    return f"⏳ Waiting in the queue: {ahead} question{'s' if ahead > 1 else ''} ahead of yours."


def refusal(user_id: str) -> str:
    """One line for someone the allowlist does not cover; their id is what the operator needs."""
    return f"Sorry, I'm not enabled for you here. Ask the bot's operator to add your user id ({user_id}) or this chat."


def not_pictures(names: list[str]) -> str:
    return NOT_PICTURES.format(names=", ".join(names))


def download_failed(name: str) -> str:
    return DOWNLOAD_FAILED.format(name=name or "that picture")


def over_download_limit(size: int, limit: int, platform: str) -> str:
    """A file over what the platform lets bots download (checked before trying)."""
    return (f"That file is {size / 1024**2:.1f} MB, and {platform} lets bots download at most "
            f"{math.ceil(limit / 1024**2)} MB. Please send a smaller picture, or send it as a photo.")


def too_big(size: int, limit: int) -> str:
    return f"That file is {size / 1024 / 1024:.1f} MB, over the {limit / 1024 / 1024:.0f} MB limit; please send a smaller picture."


# --- PDFs and long screenshots (each `{name}` is the file's name) -----------------------------------
PDF_EMPTY = "{name} is empty; please send the PDF again."
PDF_NO_PAGES = "{name} has no pages to read; please check the file and send it again."
PDF_PASSWORD = "{name} is protected by a password; please send a copy without one, or screenshots of the pages."
PDF_DAMAGED = "{name} looks damaged, so I couldn't open it; please export it again or send screenshots of the pages."
PDF_TOO_SLOW = "{name} took too long to open, so I skipped it; please send the pages you need as screenshots."
PDF_TOO_LARGE = "{name} is too large to open; please send only the pages you need, or screenshots of them."
PDF_ABSURD_PAGES = "The pages of {name} have sizes I can't render; please send screenshots of them instead."


def pdf_over_limit(name: str, size: int, limit: int) -> str:
    return (f"{name} is {size / 1024**2:.1f} MB, over the {limit / 1024**2:.0f} MB limit; "
            "please send only the pages you need.")


def pdf_pages_read(name: str, pages: str, total: int, max_pages: int) -> str:
    """`pages` as "pages 1-8"; said when a PDF has more pages than were read."""
    return (f"{name} has {total} pages; I read {pages}. Name others in your question "
            f"(e.g. \"pages 3-5\"; up to {max_pages} at a time) to read them.")


def pdf_pages_left_out(name: str, pages: str) -> str:
    return f"I left out {pages} of {name}: their page size can't be rendered."


def screenshot_too_long(name: str, percent: int, tall: bool) -> str:
    part = "top" if tall else "left-hand"
    return (f"{name} is too long to read whole; I read the {part} {percent}% of it. "
            "Send the rest as another screenshot to ask about it.")
