"""JSON request bodies, read strictly: UTF-8 only, shallow, no lone surrogates, an object at the top.

Each failure is an `ApiError(400)` with one sentence (in the browser's language), so a hostile body
never reaches a handler (or the database, which cannot store a lone surrogate). Handlers then read their fields with
`string_field` / `string_list`, so a wrong type in any field is a 400 as well.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bot.i18n import N_, _

from .errors import ApiError

__all__ = ["MAX_DEPTH", "check_text", "parse_json_object", "string_field", "string_list"]

MAX_DEPTH = 16  # the API's bodies are flat; anything deeper is not a request of this page
# Lone surrogates (JSON's \ud800 escapes) cannot be encoded, and PostgreSQL text cannot hold NUL.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
TOO_DEEP = N_("The request body is nested too deeply.")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


BODY = N_("The request body")


def check_text(value: str, what: str) -> str:
    """`value` unchanged, or a 400 when it holds a character no database can store (`what`: an N_() noun)."""
    found = _UNSTORABLE.search(value)
    if found:
        kind = _("a NUL character") if found.group() == "\x00" else _("a lone surrogate")
        raise ApiError(400, _("{what} contains an invalid character ({kind}).").format(what=_(what), kind=kind))
    return value


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a dict; an empty body is {}."""
    if not raw.strip():
        return {}
    try:
        # json.loads would guess UTF-16 or UTF-32 from the bytes; this API speaks UTF-8 only.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, _("The request body is not UTF-8 text.")) from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, _(TOO_DEEP)) from None
    except ValueError:
        raise ApiError(400, _("The request body is not valid JSON.")) from None
    _check_tree(body)
    if not isinstance(body, dict):
        raise ApiError(400, _("The request body must be a JSON object."))
    return body


def _check_tree(body: Any) -> None:
    """Depth and strings of the whole document, without recursion (a deep document must not recurse here)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            check_text(value, BODY)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise ApiError(400, _(TOO_DEEP))
        if isinstance(value, dict):
            for key, item in value.items():
                check_text(key, BODY)
                stack.append((item, depth + 1))
        else:
            stack.extend((item, depth + 1) for item in value)


def string_field(body: dict[str, Any], name: str, *, default: str = "", max_chars: int | None = None) -> str:
    """body[name] as a string (`default` when absent); any other JSON type is a 400."""
    value = body.get(name, default)
    if not isinstance(value, str):
        raise ApiError(400, _('"{name}" must be a string.').format(name=name))
    if max_chars is not None and len(value) > max_chars:
        raise ApiError(413, _('"{name}" is too long; keep it under {limit} characters.').format(name=name, limit=max_chars))
    return value


def string_list(body: dict[str, Any], name: str, *, max_items: int) -> list[str]:
    """body[name] as a list of strings ([] when absent); any other shape is a 400."""
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ApiError(400, _('"{name}" must be a list of strings.').format(name=name))
    if len(value) > max_items:
        raise ApiError(
            400, _('"{name}" has {count} entries; at most {limit} are accepted.').format(name=name, count=len(value), limit=max_items)
        )
    return value
