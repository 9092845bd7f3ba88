"""Who is asking the web chat, and the checks that keep other sites and other browsers out.

- Identity: an allowed browser gets an identity cookie the server signed (`identity.py`); its sessions
  belong to a hash of it. A value the server did not issue is ignored and replaced.
- Tokens: `VLMBOT_WEB_TOKEN` (required off loopback) and `VLMBOT_WEB_ADMIN_TOKEN` are entered once per
  browser. The login cookie holds a random login id; the database holds its hash with an expiry
  (`bot/web_logins.py`). Logout deletes it, and changing a token ends every login made with it.
  Scripts send `Authorization: Bearer <token>` instead.
- Wrong tokens, at login or as a Bearer header, are throttled per client address (`throttle.py`).
- Cross-site request forgery: every state-changing request needs the `X-CSRF-Token` header equal to
  the CSRF cookie (SameSite=Strict), and a foreign `Origin` or `Sec-Fetch-Site` is refused.
- With no token (loopback only), the `Host` header must be a loopback name, so a DNS-rebinding page
  cannot talk to the chat.
- TLS: this server speaks plain HTTP. With `VLMBOT_WEB_TLS_PROXY=true` (a TLS reverse proxy serves the
  chat as https) every cookie is `Secure` and named `__Host-...`, which pins it to this host name and
  keeps plain-http pages from setting it; the client address is then the proxy's X-Forwarded-For entry.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from bot.i18n import _
from bot.web_logins import LoginKind, WebLogins

from .errors import ApiError
from .identity import Identities
from .throttle import LoginThrottle

__all__ = [
    "ADMIN_COOKIE",
    "AUTH_COOKIE",
    "CLIENT_COOKIE",
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "HOST_PREFIX",
    "Access",
    "Caller",
    "is_loopback_host",
]

CLIENT_COOKIE = "vlmbot_client"
AUTH_COOKIE = "vlmbot_auth"
ADMIN_COOKIE = "vlmbot_admin"
CSRF_COOKIE = "vlmbot_csrf"
CSRF_HEADER = "X-CSRF-Token"
HOST_PREFIX = "__Host-"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_YEAR = 365 * 24 * 3600
_LOGIN_COOKIES: tuple[tuple[LoginKind, str], ...] = (("user", AUTH_COOKIE), ("admin", ADMIN_COOKIE))


def is_loopback_host(host: str) -> bool:
    """'localhost', '127.0.0.1', '::1' (brackets allowed) and '*.localhost' are loopback; '' (all interfaces) is not."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    # Header values may carry undecodable bytes as surrogates; compare them as the bytes they were.
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


def _hash(login_id: str) -> str:
    return hashlib.sha256(login_id.encode("utf-8", "surrogateescape")).hexdigest()


def _netloc(url: str) -> str | None:
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:  # "http://[::1" and other unparseable values
        return None


@dataclass(frozen=True)
class Caller:
    """The browser behind a request. `user_id` is None until it has a signed identity cookie."""

    user_id: str | None
    allowed: bool  # may use the chat
    admin: bool  # may read every session


class Access:
    def __init__(
        self,
        token: str | None,
        admin_token: str | None,
        *,
        secret: bytes,
        logins: WebLogins,
        login_ttl_s: float,
        tls_proxy: bool = False,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.token = token or None
        self.admin_token = admin_token or None
        self.identities = Identities(secret)
        self._mark_key = hmac.new(secret, b"vlmbot-web-token-mark", hashlib.sha256).digest()
        self._logins = logins
        self.login_ttl_s = login_ttl_s
        self.tls_proxy = tls_proxy
        self.throttle = throttle or LoginThrottle()

    # --- transport ----------------------------------------------------------------------------

    def secure(self, request: web.Request) -> bool:
        return request.secure or self.tls_proxy

    def cookie_name(self, request: web.Request, base: str) -> str:
        return HOST_PREFIX + base if self.secure(request) else base

    def _cookie(self, request: web.Request, base: str) -> str | None:
        return request.cookies.get(self.cookie_name(request, base))

    def _set(self, request: web.Request, response: web.StreamResponse, base: str, value: str, *,
             http_only: bool, max_age: int) -> None:
        secure = self.secure(request)
        response.set_cookie(
            self.cookie_name(request, base), value, path="/", max_age=max_age, httponly=http_only,
            samesite="Strict", secure=secure or None,
        )

    def client_address(self, request: web.Request) -> str:
        """The address throttling counts by: the peer, or behind the TLS proxy the address it forwarded.
        IPv6 addresses count per /64, the block one customer usually has."""
        address = request.remote or ""
        if self.tls_proxy:
            forwarded = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")[-1].strip()
            address = forwarded or address
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return address[:64]
        if ip.version == 6:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)

    # --- identity and tokens ------------------------------------------------------------------

    def _mark(self, kind: LoginKind, token: str) -> str:
        return hmac.new(self._mark_key, f"{kind}:{token}".encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()

    def _token(self, kind: LoginKind) -> str | None:
        return self.admin_token if kind == "admin" else self.token

    def _refuse_if_throttled(self, address: str) -> None:
        retry = self.throttle.retry_after(address)
        if retry is not None:
            raise ApiError(
                429,
                _("Too many wrong tokens from your address; try again in {seconds} seconds.").format(seconds=retry),
                headers={"Retry-After": str(retry)},
            )

    async def _signed_in(self, request: web.Request, kind: LoginKind, base: str) -> bool:
        token = self._token(kind)
        raw = self._cookie(request, base)
        if token is None or not raw or len(raw) > 128:
            return False
        login = await self._logins.find(_hash(raw))
        return login is not None and login.kind == kind and _same(login.token_mark, self._mark(kind, token))

    async def caller(self, request: web.Request) -> Caller:
        """Who is asking (one database read per login cookie); call it once per request."""
        user_id = self.identities.user_id(self._cookie(request, CLIENT_COOKIE))
        header = request.headers.get("Authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
        bearer_user = bearer_admin = False
        if bearer is not None:
            address = self.client_address(request)
            self._refuse_if_throttled(address)
            bearer_admin = _same(bearer, self.admin_token)
            bearer_user = _same(bearer, self.token)
            if not (bearer_admin or bearer_user):
                self.throttle.failed(address)
        admin = bearer_admin or await self._signed_in(request, "admin", ADMIN_COOKIE)
        allowed = self.token is None or admin or bearer_user or await self._signed_in(request, "user", AUTH_COOKIE)
        return Caller(user_id=user_id, allowed=allowed, admin=admin)

    async def login(self, request: web.Request, given: str, response: web.StreamResponse) -> tuple[bool, bool]:
        """Start the logins `given` earns and set their cookies; returns (it is the access token, it is the
        admin token). Throttled per client address: ApiError(429) while the address must wait."""
        address = self.client_address(request)
        self._refuse_if_throttled(address)
        earned = [(kind, base) for kind, base in _LOGIN_COOKIES if _same(given, self._token(kind))]
        if not earned:
            self.throttle.failed(address)
            return False, False
        self.throttle.succeeded(address)
        await self._logins.prune()
        replaced = [_hash(raw) for kind, base in earned if (raw := self._cookie(request, base))]
        await self._logins.revoke(replaced)
        for kind, base in earned:
            login_id = secrets.token_urlsafe(32)
            token = self._token(kind) or ""
            await self._logins.add(_hash(login_id), kind, self._mark(kind, token), ttl_s=self.login_ttl_s)
            self._set(request, response, base, login_id, http_only=True, max_age=int(self.login_ttl_s))
        kinds = {kind for kind, _base in earned}
        return "user" in kinds, "admin" in kinds

    async def logout(self, request: web.Request, response: web.StreamResponse) -> None:
        """End this browser's logins for good (the cookie is worthless afterwards, even if copied)."""
        held = [_hash(raw) for _kind, base in _LOGIN_COOKIES if (raw := self._cookie(request, base))]
        await self._logins.revoke(held)
        for _kind, base in _LOGIN_COOKIES:
            response.del_cookie(self.cookie_name(request, base), path="/", secure=self.secure(request) or None)

    def ensure_cookies(
        self, request: web.Request, response: web.StreamResponse, *, identity: bool
    ) -> tuple[str | None, str]:
        """(user id, CSRF token): the CSRF cookie is issued when missing, and the identity cookie too when
        `identity` (only to browsers allowed to chat) and the browser has none the server signed."""
        user_id = self.identities.user_id(self._cookie(request, CLIENT_COOKIE))
        if user_id is None and identity:
            value = self.identities.issue()
            self._set(request, response, CLIENT_COOKIE, value, http_only=True, max_age=_YEAR)
            user_id = self.identities.user_id(value)
        csrf = self._cookie(request, CSRF_COOKIE)
        if not csrf or not 16 <= len(csrf) <= 64 or not csrf.isascii():
            csrf = secrets.token_urlsafe(24)
            self._set(request, response, CSRF_COOKIE, csrf, http_only=False, max_age=_YEAR)
        return user_id, csrf

    # --- request checks -----------------------------------------------------------------------

    def host_problem(self, request: web.Request) -> str | None:
        """Without a token only loopback host names are served (defeats DNS rebinding)."""
        if self.token is not None:
            return None
        host = request.host or ""
        try:
            name = urlsplit(f"//{host}").hostname or ""
        except ValueError:
            name = ""
        if not is_loopback_host(name):
            return _("This chat only answers on localhost; open it as http://127.0.0.1 (got host '{host}').").format(host=host[:100])
        return None

    def cross_site_problem(self, request: web.Request) -> str | None:
        """None when a state-changing request provably comes from this page."""
        if request.method in SAFE_METHODS:
            return None
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return _("Cross-site request refused.")
        origin = request.headers.get("Origin")
        if origin is not None:
            # Host only, not scheme: behind a TLS proxy the page is https while this server sees http.
            # A page cannot set X-Forwarded-Host on a cross-site request without a CORS preflight,
            # which this server never grants, so a proxy's X-Forwarded-Host is safe to accept.
            hosts = {request.host.lower()}
            forwarded = request.headers.get("X-Forwarded-Host")
            if forwarded:
                hosts.add(forwarded.split(",")[0].strip().lower())
            if origin == "null" or _netloc(origin) not in hosts:
                return _("Cross-site request refused (the Origin does not match).")
        if not _same(request.headers.get(CSRF_HEADER), self._cookie(request, CSRF_COOKIE)):
            return _("Missing or stale CSRF token; reload the page and try again.")
        return None
