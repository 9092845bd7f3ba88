"""The web chat adapter: serves the page and its API on VLMBOT_WEB_LISTEN (127.0.0.1:8080 by default)."""

from __future__ import annotations

import asyncio
import logging
import socket

from aiohttp import web

from bot.adapter import ConfigurationError
from bot.config import Settings
from bot.inbox import Inbox
from bot.videos import video_limits
from bot.web_logins import WebLogins

from .api import PLATFORM
from .app import build_app
from .identity import load_secret
from .security import Access, is_loopback_host
from .uploads import PictureChecks, UploadLimits

__all__ = ["MIN_TOKEN_CHARS", "WebAdapter", "WebConfigError", "parse_listen"]

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16  # a token is all that stands between the network and every conversation


class WebConfigError(ConfigurationError):
    """The web chat's settings are unsafe or malformed; the message says what to set."""


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:8080', '[::1]:8080', 'localhost:0' -> (host, port); an empty host means all interfaces."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise WebConfigError(f"VLMBOT_WEB_LISTEN={value!r} is not host:port (e.g. 127.0.0.1:8080).")
    return host.strip("[]"), int(port)


def check_tokens(settings: Settings) -> None:
    """Refuse tokens that are short enough to guess, and one token used for both roles."""
    for name, value in (("VLMBOT_WEB_TOKEN", settings.web_token), ("VLMBOT_WEB_ADMIN_TOKEN", settings.web_admin_token)):
        if value and len(value) < MIN_TOKEN_CHARS:
            raise WebConfigError(
                f"{name} is {len(value)} characters; use at least {MIN_TOKEN_CHARS} random ones "
                "(e.g. `openssl rand -hex 24`)."
            )
    if settings.web_token and settings.web_token == settings.web_admin_token:
        raise WebConfigError("VLMBOT_WEB_ADMIN_TOKEN must differ from VLMBOT_WEB_TOKEN: one reads every conversation.")
    if settings.web_login_ttl_s <= 0 or settings.web_picture_decodes < 1:
        raise WebConfigError("VLMBOT_WEB_LOGIN_TTL must be positive and VLMBOT_WEB_PICTURE_DECODES at least 1.")


class WebAdapter:
    """Browser chat over the same conversation service as every other adapter (platform "web")."""

    name = "web"

    def __init__(
        self,
        settings: Settings,
        inbox: Inbox,
        *,
        keepalive_s: float = 15.0,
        checks: PictureChecks | None = None,
    ) -> None:
        """`checks`: the upload decoder with its concurrency cap (made from the settings when None)."""
        self._host, self._port = parse_listen(settings.web_listen)
        check_tokens(settings)
        if not is_loopback_host(self._host) and not settings.web_token:
            raise WebConfigError(
                f"The web chat would listen on {settings.web_listen}, beyond this machine, without an access token: "
                "set VLMBOT_WEB_TOKEN (a long random string), or VLMBOT_WEB_LISTEN=127.0.0.1:8080."
            )
        self._settings = settings
        self._inbox = inbox
        self._grace_s = settings.shutdown_grace_s
        self._limits = UploadLimits(
            max_file_bytes=settings.max_image_bytes,
            max_files=settings.max_images_per_turn,
            max_source_pixels=settings.max_image_source_pixels,
            max_decodes=settings.web_picture_decodes,
            video=video_limits(settings),
        )
        self._checks = checks or PictureChecks(self._limits)
        self._keepalive_s = keepalive_s
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The page's address once started (with the real port when the setting asked for port 0)."""
        if self._url is None:
            raise RuntimeError("the web chat is not running")
        return self._url

    async def _access(self) -> Access:
        settings = self._settings
        try:
            secret = await asyncio.to_thread(load_secret, settings.data_dir)
        except (OSError, ValueError) as exc:
            raise WebConfigError(f"The web chat cannot read its signing key: {exc}.") from exc
        return Access(
            settings.web_token,
            settings.web_admin_token,
            secret=secret,
            logins=WebLogins(self._inbox.conversations.store.engine),
            login_ttl_s=settings.web_login_ttl_s,
            tls_proxy=settings.web_tls_proxy,
        )

    async def start(self) -> None:
        access = await self._access()
        app = build_app(self._inbox, access, self._limits, self._checks, keepalive_s=self._keepalive_s)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host or None, self._port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or exc
            raise WebConfigError(f"The web chat cannot listen on {self._host}:{self._port}: {reason}.") from exc
        self._runner = runner
        self._url = self._address(runner)
        log.info("web chat at %s%s", self._url, " (access token required)" if access.token else "")

    def _address(self, runner: web.AppRunner) -> str:
        port = self._port
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                port = int(address[1])
                break
        host = self._host
        if not host or host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()  # closes the listener, lets open answers finish, then cancels them
        await self._inbox.close(PLATFORM, self._grace_s)
