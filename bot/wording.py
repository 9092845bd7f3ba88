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
    "PRESENT_FAILED",
    "SHUTTING_DOWN",
    "STOPPED",
    "VOTE_FAILED",
    "WORKING",
    "download_failed",
    "not_pictures",
    "over_download_limit",
    "queued",
    "refusal",
    "too_big",
    "video_refused",
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
NOT_PICTURES = (
    "I can only read pictures (PNG, JPEG, WebP, GIF...) and short videos (MP4, MOV, WebM), so I skipped {names}. "
    "Send a photo, a screenshot or a screen recording and ask about it."
)
# A video that cannot be watched; {label} is its name in quotes or "The video", {limit} the setting.
VIDEO_EMPTY = "{label} is empty or has no frames; please send the recording again."
VIDEO_TOO_BIG = "{label} is over the {limit} limit for videos; please send a shorter clip."
VIDEO_TOO_LONG = "{label} is longer than {limit} seconds; please trim it to the part that matters and send it again."
VIDEO_TOO_MANY_PIXELS = "{label} is too large a video to read; please record it at a lower resolution."
VIDEO_NO_PICTURE = "{label} has sound but no picture; please send a screen recording or a screenshot."
VIDEO_DAMAGED = "{label} is not a video I can read or is damaged; please send an MP4, MOV, WebM or GIF."
VIDEO_TOO_SLOW = "{label} took too long to read; please send a shorter or smaller clip."
_VIDEO_REFUSED = {
    "empty": VIDEO_EMPTY,
    "too_big": VIDEO_TOO_BIG,
    "too_long": VIDEO_TOO_LONG,
    "too_many_pixels": VIDEO_TOO_MANY_PIXELS,
    "no_video": VIDEO_NO_PICTURE,
    "damaged": VIDEO_DAMAGED,
    "too_slow": VIDEO_TOO_SLOW,
}
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


def video_refused(problem: str, label: str, limit: str = "") -> str:
    """One line for a video that cannot be watched (`problem`: a key of `_VIDEO_REFUSED`)."""
    return _VIDEO_REFUSED[problem].format(label=label, limit=limit)


def download_failed(name: str) -> str:
    return DOWNLOAD_FAILED.format(name=name or "that picture")


def over_download_limit(size: int, limit: int, platform: str) -> str:
    """A file over what the platform lets bots download (checked before trying)."""
    return (f"That file is {size / 1024**2:.1f} MB, and {platform} lets bots download at most "
            f"{math.ceil(limit / 1024**2)} MB. Please send a smaller picture, or send it as a photo.")


def too_big(size: int, limit: int) -> str:
    return f"That file is {size / 1024 / 1024:.1f} MB, over the {limit / 1024 / 1024:.0f} MB limit; please send a smaller picture."
