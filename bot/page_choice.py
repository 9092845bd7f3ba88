"""The pages a question asks for: "pages 3-5", "page 2", "pages 2, 4 and 7", "p. 3", "第3-5页", "第2页", "第三页", "3到5页"."""

from __future__ import annotations

import re

from bot.wording import page_list

__all__ = ["chinese_number", "format_pages", "requested_pages"]

_MAX_NUMBERS = 1000  # "pages 1-1000000000" asks for more than any PDF gets read
_NUMBER_LIST = r"\d{1,6}(?:\s*(?:-|–|—|to|through|and|,|&)\s*\d{1,6})*"
# Atomic, and no letter right after the last number: "the page 404s" names no page.
_ENGLISH = re.compile(rf"\b(?:pages?|pp?\.)\s*((?>{_NUMBER_LIST}))(?!\w)", re.IGNORECASE)
_RANGE = re.compile(r"(\d+)\s*(?:-|–|—|to|through)\s*(\d+)", re.IGNORECASE)
_CHINESE_DIGITS = dict(zip("〇零一二两三四五六七八九", (0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9), strict=True))
_NUMBER = r"(\d{1,6}|[〇零一二两三四五六七八九十]{1,3})"
_TO = r"(?:-|–|—|~|～|至|到)"
# 第3页, 第三页, 第3-5页, 第3至第5页, 第3页到第5页
_CHINESE = re.compile(rf"第\s*{_NUMBER}\s*(?:页\s*)?(?:{_TO}\s*第?\s*{_NUMBER}\s*)?页")
# 3-5页, 3到5页 (Arabic numerals only: "一到两页" is a count of pages, not a range)
_CHINESE_SPAN = re.compile(rf"(?<![第\d])(\d{{1,6}})\s*{_TO}\s*(\d{{1,6}})\s*页")


def chinese_number(text: str) -> int | None:
    """"3" -> 3, "三" -> 3, "十一" -> 11, "二十" -> 20, "两" -> 2, "一〇" -> 10; None for what is not 1-99."""
    if text.isdigit():
        return int(text)
    if text.count("十") > 1:
        return None
    if "十" not in text:
        digits = [_CHINESE_DIGITS.get(c) for c in text]
        if len(digits) > 2 or None in digits:
            return None
        return int("".join(str(d) for d in digits))
    tens, _, ones = text.partition("十")
    high = 1 if not tens else _CHINESE_DIGITS.get(tens) if len(tens) == 1 else None
    low = 0 if not ones else _CHINESE_DIGITS.get(ones) if len(ones) == 1 else None
    if high is None or low is None:
        return None
    return high * 10 + low


def _expand(first: int, last: int, into: list[int]) -> None:
    low, high = min(first, last), max(first, last)
    into.extend(range(low, min(high, low + _MAX_NUMBERS) + 1))


def requested_pages(text: str) -> tuple[int, ...]:
    """The page numbers named in `text`, ascending and without repeats; () when it names none."""
    numbers: list[int] = []
    for match in _ENGLISH.finditer(text):
        listed = match.group(1)
        for part in re.split(r"\s*(?:,|&|\band\b)\s*", listed):
            if span := _RANGE.fullmatch(part.strip()):
                _expand(int(span.group(1)), int(span.group(2)), numbers)
            elif part.strip().isdigit():
                numbers.append(int(part))
    for match in [*_CHINESE.finditer(text), *_CHINESE_SPAN.finditer(text)]:
        first = chinese_number(match.group(1))
        last = chinese_number(match.group(2)) if match.group(2) else first
        if first is not None and last is not None:
            _expand(first, last, numbers)
    return tuple(sorted({n for n in numbers if n >= 1}))[:_MAX_NUMBERS]


def format_pages(numbers: tuple[int, ...] | list[int]) -> str:
    """[1, 2, 3, 5] -> "pages 1-3 and 5"; [4] -> "page 4" (in the user's language)."""
    spans: list[str] = []
    ordered = sorted(numbers)
    start = previous = ordered[0]
    for number in [*ordered[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        spans.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return page_list(spans)
