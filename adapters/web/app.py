"""The aiohttp application: the page, its static files, the APIs, and the checks in front of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from bot.i18n import speaking
from bot.inbox import Inbox
from bot.incoming import Sender

from .admin import AdminApi
from .api import ChatApi, browser_language
from .errors import error_middleware
from .security import Access
from .uploads import PictureChecks, UploadLimits

__all__ = ["build_app"]

STATIC_DIR = Path(__file__).parent / "static"
_STATIC_TYPES = {
    "index.html": "text/html",
    "app.css": "text/css",
    "app.js": "text/javascript",
    "markdown.js": "text/javascript",
    "icon.svg": "image/svg+xml",
}
# The page runs only its own files: no inline script or handler, no plugin, no frame, no <base>. Recordings
# play from their attach preview (blob:) and from the chat's own picture route.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; frame-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# An API answer opened as a document (a picture, an export) runs nothing and gets an origin of its own.
_API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _static_files() -> dict[str, bytes]:
    return {name: (STATIC_DIR / name).read_bytes() for name in _STATIC_TYPES}


def build_app(
    inbox: Inbox, access: Access, limits: UploadLimits, checks: PictureChecks, *, keepalive_s: float
) -> web.Application:
    files = _static_files()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        problem = access.host_problem(request) or access.cross_site_problem(request)
        if problem:
            return web.json_response({"error": problem}, status=403)
        return await handler(request)

    @web.middleware
    async def language(request: web.Request, handler: Handler) -> web.StreamResponse:
        """What a request answers itself (a vote, /clear, an error) is in the browser's language."""
        with speaking(await inbox.language_of(Sender("", language=browser_language(request)))):
            return await handler(request)

    async def static(request: web.Request) -> web.Response:
        name = request.match_info.get("name", "index.html")
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(body=files[name], content_type=_STATIC_TYPES[name], headers={"Cache-Control": "no-cache"})

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Content-Security-Policy", _API_CSP if request.path.startswith("/api/") else _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")

    # The body limit of plain reads; questions are read as a stream with their own per-file limits.
    app = web.Application(middlewares=[language, error_middleware, guard], client_max_size=1024 * 1024)
    app.on_response_prepare.append(headers)
    app.router.add_get("/", static)
    app.router.add_get("/static/{name}", static)
    app.router.add_routes(ChatApi(inbox, access, limits, checks, keepalive_s=keepalive_s).routes())
    app.router.add_routes(AdminApi(inbox.conversations, access).routes())
    return app
