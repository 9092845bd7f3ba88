"""Who is asking the web chat, and the checks that keep other sites and other browsers out.

- Each browser gets a random identity cookie; its sessions belong to a hash of it.
- `VLMBOT_WEB_TOKEN` (required off loopback) and `VLMBOT_WEB_ADMIN_TOKEN` are proven by a cookie set
  at login (an HMAC of the token, so the token itself is never stored in the browser) or a Bearer header.
- Cross-site request forgery: every state-changing request needs the `X-CSRF-Token` header equal to
  the CSRF cookie (SameSite=Strict), and a foreign `Origin` or `Sec-Fetch-Site` is refused.
- With no token (loopback only), the `Host` header must be a loopback name, so a DNS-rebinding page
  cannot talk to the chat.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

__all__ = [
    "ADMIN_COOKIE",
    "AUTH_COOKIE",
    "CLIENT_COOKIE",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "Access",
    "Caller",
    "is_loopback_host",
]

CLIENT_COOKIE = "vlmbot_client"
AUTH_COOKIE = "vlmbot_auth"
ADMIN_COOKIE = "vlmbot_admin"
CSRF_COOKIE = "vlmbot_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_YEAR = 365 * 24 * 3600


def is_loopback_host(host: str) -> bool:
    """'localhost', '127.0.0.1', '::1' (brackets allowed) and '*.localhost' are loopback; '' (all interfaces) is not."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _proof(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Caller:
    """The browser behind a request. `user_id` is None until it has an identity cookie."""

    user_id: str | None
    allowed: bool  # may use the chat
    admin: bool  # may read every session


class Access:
    def __init__(self, token: str | None, admin_token: str | None) -> None:
        self.token = token or None
        self.admin_token = admin_token or None

    # --- identity and tokens ------------------------------------------------------------------

    @staticmethod
    def user_id(client_secret: str) -> str:
        # Stored as the sessions' owner: a hash, so reading the database does not reveal the cookie.
        return "b-" + hashlib.sha256(client_secret.encode()).hexdigest()[:24]

    def caller(self, request: web.Request) -> Caller:
        client = request.cookies.get(CLIENT_COOKIE)
        user_id = self.user_id(client) if client and 16 <= len(client) <= 64 else None
        bearer = request.headers.get("Authorization", "")
        bearer = bearer[7:].strip() if bearer[:7].lower() == "bearer " else None
        admin = self.admin_token is not None and (
            _same(bearer, self.admin_token)
            or _same(request.cookies.get(ADMIN_COOKIE), _proof(self.admin_token, "vlmbot-web-admin"))
        )
        allowed = (
            self.token is None
            or admin
            or _same(bearer, self.token)
            or _same(request.cookies.get(AUTH_COOKIE), _proof(self.token, "vlmbot-web-user"))
        )
        return Caller(user_id=user_id, allowed=allowed, admin=admin)

    def login(self, given: str, response: web.StreamResponse, *, secure: bool) -> tuple[bool, bool]:
        """Set the cookies `given` earns; returns (it is the access token, it is the admin token)."""
        admin = self.admin_token is not None and _same(given, self.admin_token)
        user = self.token is not None and _same(given, self.token)
        if admin:
            _set(response, ADMIN_COOKIE, _proof(self.admin_token or "", "vlmbot-web-admin"), secure, http_only=True)
        if user:
            _set(response, AUTH_COOKIE, _proof(self.token or "", "vlmbot-web-user"), secure, http_only=True)
        return user, admin

    @staticmethod
    def logout(response: web.StreamResponse) -> None:
        for name in (AUTH_COOKIE, ADMIN_COOKIE):
            response.del_cookie(name, path="/")

    @staticmethod
    def ensure_cookies(request: web.Request, response: web.StreamResponse) -> tuple[str, str]:
        """The browser's identity and CSRF cookies, issued when missing; returns (user id, csrf token)."""
        secure = request.secure
        client = request.cookies.get(CLIENT_COOKIE)
        if not client or not 16 <= len(client) <= 64:
            client = secrets.token_urlsafe(24)
            _set(response, CLIENT_COOKIE, client, secure, http_only=True)
        csrf = request.cookies.get(CSRF_COOKIE)
        if not csrf or not 16 <= len(csrf) <= 64:
            csrf = secrets.token_urlsafe(24)
            _set(response, CSRF_COOKIE, csrf, secure, http_only=False)
        return Access.user_id(client), csrf

    # --- request checks -----------------------------------------------------------------------

    def host_problem(self, request: web.Request) -> str | None:
        """Without a token only loopback host names are served (defeats DNS rebinding)."""
        if self.token is not None:
            return None
        host = request.host or ""
        name = urlsplit(f"//{host}").hostname or ""
        if not is_loopback_host(name):
            return f"This chat only answers on localhost; open it as http://127.0.0.1 (got host '{host}')."
        return None

    @staticmethod
    def cross_site_problem(request: web.Request) -> str | None:
        """None when a state-changing request provably comes from this page."""
        if request.method in SAFE_METHODS:
            return None
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return "Cross-site request refused."
        origin = request.headers.get("Origin")
        if origin is not None:
            # Host only, not scheme: behind a TLS proxy the page is https while this server sees http.
            # A page cannot set X-Forwarded-Host on a cross-site request without a CORS preflight,
            # which this server never grants, so a proxy's X-Forwarded-Host is safe to accept.
            hosts = {request.host.lower()}
            forwarded = request.headers.get("X-Forwarded-Host")
            if forwarded:
                hosts.add(forwarded.split(",")[0].strip().lower())
            if origin == "null" or urlsplit(origin).netloc.lower() not in hosts:
                return "Cross-site request refused (the Origin does not match)."
        cookie = request.cookies.get(CSRF_COOKIE)
        if not _same(request.headers.get(CSRF_HEADER), cookie):
            return "Missing or stale CSRF token; reload the page and try again."
        return None


def _set(response: web.StreamResponse, name: str, value: str, secure: bool, *, http_only: bool) -> None:
    response.set_cookie(
        name, value, path="/", max_age=_YEAR, httponly=http_only, samesite="Strict", secure=secure or None
    )
