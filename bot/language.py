"""Which language the bot speaks to a user: English or Simplified Chinese, and how a platform's
language tag (Telegram's `language_code`, Slack's user locale, a browser's Accept-Language, the
terminal's LANG) maps to one.

Every Chinese tag maps to Simplified Chinese, Traditional ones (zh-TW, zh-HK, zh-Hant) included:
there is no Traditional catalog, and a reader of Traditional Chinese reads Simplified far more
easily than English. Any other language gets English.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

__all__ = ["Language", "LanguageSetting", "choose", "from_accept_language", "from_tag"]


class Language(StrEnum):
    EN = "en"
    ZH = "zh"

    @property
    def locale(self) -> str:
        """The gettext catalog's locale directory (bot/locale/<locale>/LC_MESSAGES)."""
        return "zh_CN" if self is Language.ZH else "en"


LanguageSetting = Literal["auto", "en", "zh"]  # VLMBOT_LANGUAGE


def from_tag(tag: str | None) -> Language | None:
    """'zh-hans', 'zh_CN.UTF-8', 'en-US' -> a language; None for anything else (unknown, 'C', 'fr')."""
    if not tag:
        return None
    primary = tag.strip().split(".")[0].split("@")[0].replace("_", "-").split("-")[0].lower()
    return {"zh": Language.ZH, "en": Language.EN}.get(primary)


def from_accept_language(header: str | None) -> Language | None:
    """The language an Accept-Language header prefers most among those the bot speaks (RFC 9110 12.5.4).

    Ranges are weighed by their q-value (1 when absent; q=0 means "not this one"); among equal weights
    the first listed wins. A malformed range or q-value is skipped, not fatal: the header is the client's.
    """
    best: tuple[float, Language] | None = None
    for item in (header or "").split(",")[:32]:
        tag, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = -1.0
        if not 0 < weight <= 1:
            continue
        language = from_tag(tag)
        if language is not None and (best is None or weight > best[0]):
            best = (weight, language)
    return best[1] if best else None


def choose(setting: LanguageSetting, user: Language | None) -> Language:
    """The one decision: VLMBOT_LANGUAGE when it forces a language, else the user's, else English."""
    if setting != "auto":
        return Language(setting)
    return user or Language.EN
