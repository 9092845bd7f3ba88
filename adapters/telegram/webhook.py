"""The webhook receiver: an aiohttp server that checks Telegram's secret token on every request.

Every answer but a delivered update's is a JSON error `{"error": ...}` with a 4xx status: a body
that is not a JSON object of UTF-8 text (a list, deep nesting, invalid bytes, lone surrogates) or
that python-telegram-bot cannot read as an update is refused with 400, never a 500.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

from bot.http import json_error, json_errors

__all__ = ["MAX_DEPTH", "MalformedUpdate", "WebhookServer", "parse_body"]

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_DEPTH = 64  # a Telegram update nests about ten levels deep (message, reply, entities...)



class MalformedUpdate(ValueError):
    """A webhook body that is not a Telegram update; the message says why, for the 400 answer."""


def _check_values(data: object) -> None:
    """Reject nesting beyond MAX_DEPTH and strings that are not valid Unicode (lone surrogates, which
    JSON's \\ud800 escapes can carry), walking without recursion."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedUpdate("the update holds invalid text (a lone surrogate)") from None
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise MalformedUpdate("the update is nested too deeply")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                stack.append((key, depth))
                stack.append((item, depth + 1))


def parse_body(body: bytes) -> dict[str, Any]:
    """A webhook body -> the update as a JSON object, or MalformedUpdate."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedUpdate("the body is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise MalformedUpdate("the update is nested too deeply") from None
    except ValueError:
        raise MalformedUpdate("the body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedUpdate("the body is not a JSON object")
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise MalformedUpdate("the update has no integer update_id")
    _check_values(data)
    return data




class WebhookServer:
    """Accepts POSTs at the path of `url`; `deliver` gets each update's JSON object (acknowledged right
    after) and raises MalformedUpdate for one it cannot use."""

    def __init__(self, url: str, listen: str, secret: str, deliver: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._path = urlparse(url).path or "/"
        host, _, port = listen.rpartition(":")
        self._host, self._port = host or "0.0.0.0", int(port)
        self._secret = secret.encode()
        self._deliver = deliver
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(middlewares=[json_errors])
        app.router.add_post(self._path, self._on_request)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_request(self, request: web.Request) -> web.Response:
        # aiohttp keeps undecodable header bytes as surrogates: "replace" so that they cannot raise here.
        if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace"), self._secret):
            log.warning("telegram webhook: request with a wrong secret token from %s", request.remote)
            return json_error(403, "wrong secret token")
        try:
            data = parse_body(await request.read())
            await self._deliver(data)
        except MalformedUpdate as exc:
            log.warning("telegram webhook: refused a malformed update from %s: %s", request.remote, exc)
            return json_error(400, str(exc))
        return web.Response(status=200)
