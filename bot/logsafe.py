"""Secrets never reach a log, at any level: every log record is redacted as it is created.

The Bot API carries the bot token in every URL (`/bot<token>/getMe`), and httpx logs those URLs;
python-telegram-bot logs each call's parameters at DEBUG, `setWebhook`'s `secret_token` included.
A filter on the root handlers would miss handlers added later (a library's, pytest's), so the
redaction wraps the log record factory instead: any handler sees only the redacted text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

__all__ = ["install", "redact", "register", "uninstall"]

_lock = threading.Lock()
_replacements: tuple[tuple[str, str], ...] = ()  # (secret text, shown instead), longest first
_base_factory: Callable[..., logging.LogRecord] | None = None  # the factory ours wraps, once installed


def register(value: str | None, label: str) -> None:
    """Hide `value` (as written and URL-encoded) in every later log record as `[redacted LABEL]`."""
    global _replacements
    if not value:
        return
    shown = f"[redacted {label}]"
    with _lock:
        known = dict(_replacements)
        for form in (value, quote(value, safe=""), quote(value)):
            known.setdefault(form, shown)
        _replacements = tuple(sorted(known.items(), key=lambda item: -len(item[0])))


def redact(text: str) -> str:
    for secret, shown in _replacements:
        if secret in text:
            text = text.replace(secret, shown)
    return text


def _scrub(record: logging.LogRecord) -> None:
    if not _replacements:
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep both parts, redacted, instead of failing the caller
        message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), None
    else:
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        # httpx errors quote the request URL: format the traceback now, redacted; formatters reuse exc_text.
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            record.exc_text = clean
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install(secrets: Iterable[tuple[str, str]]) -> None:
    """Register (label, value) pairs and redact every log record created from now on (idempotent)."""
    global _base_factory
    for label, value in secrets:
        register(value, label)
    with _lock:
        if _base_factory is not None:
            return
        base = _base_factory = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = base(*args, **kwargs)
            _scrub(record)
            return record

        logging.setLogRecordFactory(factory)


def uninstall() -> None:
    """Forget every secret and restore the record factory that `install` wrapped (tests use this)."""
    global _base_factory, _replacements
    with _lock:
        if _base_factory is not None:
            logging.setLogRecordFactory(_base_factory)
        _base_factory, _replacements = None, ()
