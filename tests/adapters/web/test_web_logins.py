"""Per-login, revocable, expiring web sign-ins; throttled guessing; no short tokens; __Host- cookies over TLS
(issue 11, finding 6). Before: the auth cookie was the same HMAC of the token for everyone, lasted a
year, survived logout, and any number of guesses of any token length were allowed."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from yarl import URL

from adapters.web import WebAdapter, WebConfigError
from adapters.web.throttle import LoginThrottle
from tests.adapters.web.conftest import Browser, new_thread, running_web

TOKEN = "user-token-0123456789"
ADMIN = "admin-token-0123456789"


async def login(browser: Browser, token: str = TOKEN) -> tuple[int, Any]:
    return await browser.request("POST", "/api/login", json={"token": token})


async def rows(service: Any) -> list[tuple[str, str]]:
    async with service.store.engine.connect() as db:
        return [tuple(r) for r in (await db.execute(text("SELECT id_hash, kind FROM web_logins"))).all()]


async def test_each_login_has_its_own_cookie_stored_only_as_a_hash(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service, running_web(service, web_token=TOKEN, web_admin_token=ADMIN) as adapter:
        async with browsers(adapter.url) as a, browsers(adapter.url) as b:
            async with a.http.post(f"{a.base}/api/login", json={"token": TOKEN}, headers=a.headers()) as response:
                assert response.status == 200
                cookie = response.cookies["vlmbot_auth"]
                assert cookie["max-age"] == str(7 * 24 * 3600) and cookie["httponly"] and cookie["samesite"] == "Strict"
            assert (await login(b))[0] == 200
            assert (await login(b, ADMIN))[1] == {"authenticated": True, "admin": True}
            values = [a.cookie("vlmbot_auth") or "", b.cookie("vlmbot_auth") or "", b.cookie("vlmbot_admin") or ""]
            assert "" not in values and len(set(values)) == 3  # no longer one value for everyone
            stored = await rows(service)
            kinds = ["user", "user", "admin"]
            assert sorted(stored) == sorted((hashlib.sha256(v.encode()).hexdigest(), k) for v, k in zip(values, kinds, strict=True))
            assert all(v not in str(stored) for v in values)
            assert (await a.get("/api/sessions"))[0] == 200 and (await b.get("/api/admin/sessions"))[0] == 200
            assert (await a.get("/api/admin/sessions"))[0] == 401


async def test_logout_revokes_the_login_even_where_the_cookie_was_copied(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service, running_web(service, web_token=TOKEN, web_admin_token=ADMIN) as adapter:
        async with browsers(adapter.url) as browser, browsers(adapter.url, start=False) as thief:
            await login(browser)
            await login(browser, ADMIN)
            await browser.start()
            copied = {name: browser.cookie(name) or "" for name in ("vlmbot_client", "vlmbot_auth", "vlmbot_admin")}
            thief.http.cookie_jar.update_cookies(copied, URL(adapter.url))
            assert (await thief.get("/api/sessions"))[0] == 200 and (await thief.get("/api/admin/sessions"))[0] == 200
            status, body = await browser.request("POST", "/api/logout")
            assert status == 200 and body == {"authenticated": False, "admin": False}
            assert browser.cookie("vlmbot_auth") in (None, "")
            assert await rows(service) == []
            assert (await thief.get("/api/sessions"))[0] == 401  # the copy died with the login
            assert (await thief.get("/api/admin/sessions"))[0] == 401
            assert (await thief.get("/api/me"))[1]["authenticated"] is False


async def test_an_expired_login_is_refused(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service, running_web(service, web_token=TOKEN) as adapter:
        async with browsers(adapter.url) as browser:
            await login(browser)
            await browser.start()
            assert (await browser.get("/api/sessions"))[0] == 200
            async with service.store.engine.begin() as db:  # the week passes
                await db.execute(text("UPDATE web_logins SET expires_at = '2000-01-01 00:00:00.000000'"))
            assert browser.cookie("vlmbot_auth")  # the browser still sends it
            status, body = await browser.get("/api/sessions")
            assert status == 401 and "token" in body["error"]
            assert (await browser.start())["authenticated"] is False
            assert (await login(browser))[0] == 200  # signing in again prunes the dead login
            assert len(await rows(service)) == 1


async def test_changing_the_token_ends_every_login_made_with_it(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service:
        async with running_web(service, web_token=TOKEN) as adapter, browsers(adapter.url) as browser:
            await login(browser)
            cookies = {name: browser.cookie(name) or "" for name in ("vlmbot_client", "vlmbot_auth")}
        async with running_web(service, web_token="a-brand-new-token-98765") as adapter:
            async with browsers(adapter.url, start=False) as same:
                same.http.cookie_jar.update_cookies(cookies, URL(adapter.url))
                assert (await same.get("/api/sessions"))[0] == 401
        async with running_web(service, web_token=TOKEN) as adapter:  # and the old token's logins still work
            async with browsers(adapter.url, start=False) as same:
                same.http.cookie_jar.update_cookies(cookies, URL(adapter.url))
                assert (await same.get("/api/sessions"))[0] == 200


async def test_guessing_is_throttled_per_client_address(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service:
        async with running_web(service, web_token=TOKEN, web_tls_proxy=True) as adapter:
            attacker = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}  # the proxy appended the real address
            async with browsers(adapter.url, tls=True, headers=attacker) as guesser:
                for guess in range(5):
                    status, body = await login(guesser, f"guess-number-{guess:08d}")
                    assert status == 401, body
                async with guesser.http.post(
                    f"{guesser.base}/api/login", json={"token": TOKEN}, headers=guesser.headers()
                ) as response:
                    assert response.status == 429 and response.content_type == "application/json"
                    assert int(response.headers["Retry-After"]) > 0
                    assert "try again in" in (await response.json())["error"]
                status, _ = await guesser.get("/api/sessions", headers={"Authorization": f"Bearer {TOKEN}"})
                assert status == 429  # the Bearer header is the same guess by another door
            # A colleague at another address is not locked out by it.
            async with browsers(adapter.url, tls=True, headers={"X-Forwarded-For": "192.0.2.44"}) as colleague:
                assert (await login(colleague))[0] == 200
        # Without a TLS proxy in front, X-Forwarded-For is the client's own say-so and is ignored.
        async with running_web(service, web_token=TOKEN) as adapter:
            for guess in range(5):
                async with browsers(adapter.url, headers={"X-Forwarded-For": f"192.0.2.{guess}"}) as dodger:
                    assert (await login(dodger, f"guess-number-{guess:08d}"))[0] == 401
            async with browsers(adapter.url) as dodger:
                assert (await login(dodger))[0] == 429


def test_lockouts_double_and_a_sign_in_forgives() -> None:
    now = [1000.0]
    throttle = LoginThrottle(allowed=3, window_s=60, max_lock_s=3600, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("a")
    assert throttle.retry_after("a") is None
    throttle.failed("a")
    assert throttle.retry_after("a") == 60 and throttle.retry_after("b") is None
    now[0] += 61
    for _ in range(3):
        throttle.failed("a")
    assert throttle.retry_after("a") == 120  # the second lockout is twice as long
    now[0] += 121
    for _ in range(3):
        throttle.failed("a")
    assert throttle.retry_after("a") == 240
    now[0] += 241
    throttle.succeeded("a")
    for _ in range(3):
        throttle.failed("a")
    assert throttle.retry_after("a") == 60  # back to the first step
    for _ in range(100):
        throttle.failed("c")
    assert throttle.retry_after("c") == 3600  # capped
    small = LoginThrottle(allowed=1, max_addresses=2, clock=lambda: now[0])
    for address in ("x", "y", "z"):
        small.failed(address)
    assert small.retry_after("x") is None and small.retry_after("z") == 60  # bounded memory: oldest forgotten


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"web_token": "short-token"}, "VLMBOT_WEB_TOKEN is 11 characters; use at least 16"),
        ({"web_token": TOKEN, "web_admin_token": "admin"}, "VLMBOT_WEB_ADMIN_TOKEN is 5 characters"),
        ({"web_token": TOKEN, "web_admin_token": TOKEN}, "must differ"),
        ({"web_listen": "0.0.0.0:8080", "web_token": "x" * 15}, "VLMBOT_WEB_TOKEN is 15 characters"),
    ],
    ids=["short-token", "short-admin-token", "same-token", "short-token-off-loopback"],
)
async def test_weak_tokens_are_refused_at_start(service_factory: Any, overrides: dict[str, Any], words: str) -> None:
    async with service_factory() as service:
        settings = service.settings.model_copy(update={"web_listen": "127.0.0.1:0", **overrides})
        with pytest.raises(WebConfigError) as refused:
            WebAdapter(settings, service.inbox)
        assert words in str(refused.value) and "\n" not in str(refused.value)
        WebAdapter(settings.model_copy(update={"web_token": "x" * 16, "web_admin_token": None}), service.inbox)


async def test_cookies_are_host_prefixed_and_secure_behind_a_tls_proxy(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service:
        async with running_web(service, web_token=TOKEN, web_tls_proxy=True) as adapter:
            async with browsers(adapter.url, start=False, tls=True) as browser:
                async with browser.http.get(f"{browser.base}/api/me") as response:
                    set_cookies = response.headers.getall("Set-Cookie")
                    browser.csrf = (await response.json())["csrf"]
                async with browser.http.post(
                    f"{browser.base}/api/login", json={"token": TOKEN}, headers=browser.headers()
                ) as response:
                    assert response.status == 200
                    set_cookies += response.headers.getall("Set-Cookie")
                names = sorted(c.split("=", 1)[0] for c in set_cookies)
                assert names == ["__Host-vlmbot_auth", "__Host-vlmbot_client", "__Host-vlmbot_csrf"]
                for line in set_cookies:
                    attributes = [a.strip().lower() for a in line.split(";")[1:]]
                    assert "secure" in attributes and "path=/" in attributes, line
                    assert not any(a.startswith("domain") for a in attributes), line
                assert (await browser.get("/api/sessions"))[0] == 200
                status, events = await browser.ask(new_thread(), "Hello over TLS?")
                assert status == 200
                # The plain names mean nothing here: a plain-http page could have set those.
                async with aiohttp.ClientSession() as plain:
                    cookies = {c.key.removeprefix("__Host-"): c.value for c in browser.http.cookie_jar}
                    async with plain.get(f"{browser.base}/api/sessions", cookies=cookies) as response:
                        assert response.status == 401
        async with running_web(service, web_token=TOKEN) as adapter, browsers(adapter.url) as browser:
            async with browser.http.post(
                f"{browser.base}/api/login", json={"token": TOKEN}, headers=browser.headers()
            ) as response:
                line = response.headers["Set-Cookie"]
                assert line.startswith("vlmbot_auth=") and "secure" not in line.lower()
