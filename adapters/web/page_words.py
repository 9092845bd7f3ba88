"""The web page's own words (static/index.html and static/app.js), in the browser's language.

The page is static, so /api/me sends these with the request's language (adapters/web/app.py): app.js
says each with `t("...")` and puts them into what index.html marks (`data-i18n` for an element's
text, `data-i18n-attrs` for its placeholder, title or aria-label). The operator view's banner stays
English. tests/adapters/web/test_web_language.py fails when the page uses a word that is not here.
"""

from __future__ import annotations

from bot.i18n import N_, _, current_language
from bot.language import Language

__all__ = ["PAGE_WORDS", "page_words"]

PAGE_WORDS = (
    # index.html
    N_("This chat needs its access token."),
    N_("Token"),
    N_("Continue"),
    N_("Back to the chat"),
    N_("+ New chat"),
    N_("My chats"),
    N_("All sessions"),
    N_("Search questions, answers, names"),
    N_("Search all sessions"),
    N_("Platform"),
    N_("All platforms"),
    N_("Web"),
    N_("Console"),
    N_("Conversations"),
    N_("Operator sign-in"),
    N_("Sign out"),
    N_("New conversation"),
    N_("Conversation name"),
    N_("Save"),
    N_("Rename"),
    N_("Export JSON"),
    N_("Clear"),
    N_("Attach pictures, PDFs or screen recordings"),
    N_("Attach"),
    N_("Drop or paste screenshots, then ask about them. Enter sends, Shift+Enter starts a new line."),
    N_("Send"),
    N_("Stop"),
    N_("Drop pictures to attach them"),
    # app.js
    N_("'{name}' is not a picture, a PDF or a video; send a PNG, JPEG or WebP image, a PDF, or an MP4 or WebM recording."),
    N_("'{name}' is an SVG drawing; send a PNG, JPEG or WebP picture (a screenshot works)."),
    N_("'{name}' is over the {limit} MB limit."),
    N_("Enter the admin token for the read-only view of every session."),
    N_("No sessions match."),
    N_("This conversation was cleared; its history is kept. Click a picture to attach it to a new question, then start a new chat."),
    N_("Click to show all"),
    N_("Remove this turn from the conversation"),
    N_("Remove"),
    N_("Got it - what would you like to know?"),
    N_("Answering…"),
    N_("This answer failed."),
    N_("Stopped: the conversation was cleared."),
    N_("The answer was interrupted."),
    N_("Helpful"),
    N_("Not helpful"),
    N_("Attach this picture to the next question"),
    N_("I can look at {count} pictures at a time."),
    N_("Picture attached to the next question."),
    N_("Remove this picture"),
    N_("Stopped."),
    N_("The connection to the bot was lost ({error}); try again."),
    N_("Download {name}"),
    N_("Copied"),
    N_("Copy"),
    N_("The chat could not start: {error}"),
)


def page_words() -> dict[str, str]:
    """English -> the current language, for the page's `t()`; empty for English (the page's own text)."""
    return {} if current_language() is Language.EN else {word: _(word) for word in PAGE_WORDS}
