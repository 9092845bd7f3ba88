"""The bot's own words in the user's language: stdlib gettext over the catalogs in bot/locale.

The language is chosen once per message (`bot.language.choose`, in the inbox) and held in a context
variable for the task that answers it (`speaking`), so the code that words a reply calls `_()` as
gettext code does everywhere. English is the source language: its text is the msgid itself.

Catalogs: bot/locale/vlmbot.pot is extracted with Babel (`make messages`), each language's .po is
translated by hand and compiled to the .mo committed beside it (`make catalogs`); the tests fail
when a msgid has no translation or a .mo is stale (tests/bot/test_i18n.py).
"""

from __future__ import annotations

import gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

from bot.language import Language

__all__ = ["DOMAIN", "LOCALE_DIR", "N_", "_", "current_language", "ngettext", "speaking", "translate"]

DOMAIN = "vlmbot"
LOCALE_DIR = Path(__file__).with_name("locale")

_current: ContextVar[Language] = ContextVar("vlmbot_language", default=Language.EN)


@cache
def _catalog(language: Language) -> gettext.NullTranslations:
    if language is Language.EN:
        return gettext.NullTranslations()
    # No fallback: a missing catalog is a broken install, to be seen at once rather than as English.
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language.locale])


def _(message: str) -> str:
    """`message` in the current user's language."""
    return _catalog(_current.get()).gettext(message) if message else message  # gettext("") is the catalog's header


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form for `n` in the current user's language (Chinese has one form)."""
    return _catalog(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a constant for extraction; `_()` translates it where it is said."""
    return message


def translate(message: str, language: Language) -> str:
    """`message` in `language`, whatever the current one is (e.g. the command lists of each language)."""
    return _catalog(language).gettext(message) if message else message


def current_language() -> Language:
    return _current.get()


@contextmanager
def speaking(language: Language) -> Iterator[None]:
    """Word everything said within this block, in this task, in `language`."""
    token = _current.set(language)
    try:
        yield
    finally:
        _current.reset(token)
