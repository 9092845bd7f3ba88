"""The webhook receiver: an aiohttp server that checks Telegram's secret token on every request."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

__all__ = ["WebhookServer"]

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookServer:
    """Accepts POSTs at the path of `url`; `deliver` gets each update's JSON (acknowledged right after)."""

    def __init__(self, url: str, listen: str, secret: str, deliver: Callable[[Any], Awaitable[None]]) -> None:
        self._path = urlparse(url).path or "/"
        host, _, port = listen.rpartition(":")
        self._host, self._port = host or "0.0.0.0", int(port)
        self._secret = secret.encode()
        self._deliver = deliver
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self._path, self._on_request)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_request(self, request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), self._secret):
            log.warning("telegram webhook: request with a wrong secret token from %s", request.remote)
            return web.Response(status=403)
        try:
            data = await request.json()
        except ValueError:
            return web.Response(status=400)
        await self._deliver(data)
        return web.Response(status=200)
