"""The pages a question asks for: "pages 3-5", "page 2", "pages 2, 4 and 7", "p. 3", "第3-5页", "第2页"."""

from __future__ import annotations

import re

from bot.wording import page_list

__all__ = ["format_pages", "requested_pages"]

_MAX_NUMBERS = 1000  # "pages 1-1000000000" asks for more than any PDF gets read
_NUMBER_LIST = r"\d{1,6}(?:\s*(?:-|–|—|to|through|and|,|&)\s*\d{1,6})*"
_ENGLISH = re.compile(rf"\b(?:pages?|pp?\.)\s*({_NUMBER_LIST})", re.IGNORECASE)
_CHINESE = re.compile(r"第\s*(\d{1,6})\s*(?:(?:-|–|—|~|～|至|到)\s*第?\s*(\d{1,6})\s*)?页")
_RANGE = re.compile(r"(\d+)\s*(?:-|–|—|to|through)\s*(\d+)", re.IGNORECASE)


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
    for match in _CHINESE.finditer(text):
        first = int(match.group(1))
        _expand(first, int(match.group(2) or first), numbers)
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
