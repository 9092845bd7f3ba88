"""API errors: one short sentence for the user, sent as JSON {"error": ...} with an HTTP status.

Every /api/ answer is JSON, whatever went wrong: a request the parsers could not read (bad
encoding, a malformed multipart body) is a 400, and a bug is a logged 500 with a sentence, never
aiohttp's plain-text page.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.i18n import N_, _

__all__ = ["ApiError", "error_middleware"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNREADABLE = N_("The request could not be read; check its encoding and format.")
FAILED = N_("Something went wrong on the server; please try again.")
# aiohttp's own refusals (no such route, a method the route lacks), in the browser's language.
_HTTP_ERRORS = {
    404: N_("There is nothing here; check the address."),
    405: N_("That request method is not allowed here."),
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response({"error": exc.message}, status=exc.status, headers=exc.headers)
    except web.HTTPRequestEntityTooLarge:
        return web.json_response({"error": _("That upload is too large.")}, status=413)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        message = _(_HTTP_ERRORS[exc.status]) if exc.status in _HTTP_ERRORS else exc.reason
        return web.json_response({"error": message}, status=exc.status, headers=_kept_headers(exc))
    except ConnectionError:
        raise  # the browser went away mid-request: nobody to answer
    except (UnicodeError, RecursionError) as exc:
        # A decoder below the handlers (a codec, a nested structure) refused what the client sent.
        log.info("web %s %s: unreadable request (%s: %s)", request.method, request.path, type(exc).__name__, exc)
        return web.json_response({"error": _(UNREADABLE)}, status=400)
    except Exception:
        # Request boundary: one failing request must not become a plain-text page or take the server down.
        log.exception("web %s %s failed", request.method, request.path)
        if not request.path.startswith("/api/"):
            raise
        return web.json_response({"error": _(FAILED)}, status=500)


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    """What a refusal must still say beside its JSON (a 405's Allow)."""
    return {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
