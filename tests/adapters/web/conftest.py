"""A running web chat on an ephemeral loopback port, and browser-like HTTP clients for it."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from adapters.web import WebAdapter
from adapters.web.uploads import PictureChecks


class Browser:
    """One browser: its own cookie jar (identity, CSRF, sign-in), talking to the chat like the page does."""

    def __init__(self, base_url: str, *, tls: bool = False, headers: dict[str, str] | None = None) -> None:
        """`tls`: the browser sees the page as https (a TLS proxy in front), so it sends Secure cookies;
        `headers` go with every request (what a proxy adds, such as X-Forwarded-For)."""
        self.base = base_url.rstrip("/")
        jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[self.base] if tls else None)
        self.http = aiohttp.ClientSession(cookie_jar=jar, headers=headers)
        self.csrf = ""
        self.me: dict[str, Any] = {}

    async def close(self) -> None:
        await self.http.close()

    async def start(self) -> dict[str, Any]:
        async with self.http.get(f"{self.base}/api/me") as response:
            assert response.status == 200, await response.text()
            self.me = await response.json()
        self.csrf = self.me["csrf"]
        return self.me

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.http.cookie_jar if c.key == name), None)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf, "Origin": self.base, **(extra or {})}

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = kwargs.pop("headers", None)
        if method != "GET":
            headers = self.headers(headers)
        async with self.http.request(method, f"{self.base}{path}", headers=headers, **kwargs) as response:
            body = await response.read()
            if response.content_type == "application/json":
                return response.status, json.loads(body)
            return response.status, body

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kwargs)

    async def ask(
        self,
        thread: str,
        text: str = "",
        files: Sequence[tuple[str, bytes, str]] = (),
        refs: Sequence[str] = (),
        headers: dict[str, str] | None = None,
    ) -> tuple[int, list[tuple[str, dict[str, Any]]] | dict[str, Any]]:
        """POST a question; (200, [(event, data), ...]) for a stream, (status, {"error": ...}) otherwise."""
        form = aiohttp.FormData()
        form.add_field("text", text)
        for name, data, mime in files:
            form.add_field("file", data, filename=name, content_type=mime)
        for ref in refs:
            form.add_field("ref", ref)
        async with self.http.post(
            f"{self.base}/api/threads/{thread}/messages", data=form, headers=self.headers(headers)
        ) as response:
            if response.content_type != "text/event-stream":
                return response.status, await response.json()
            return response.status, parse_events(await response.text())


def parse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.split("\n\n"):
        name, data = None, ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        if name:
            events.append((name, json.loads(data) if data else {}))
    return events


def new_thread() -> str:
    return secrets.token_hex(8)


@asynccontextmanager
async def running_web(service: Any, *, checks: PictureChecks | None = None, **overrides: Any) -> AsyncIterator[WebAdapter]:
    overrides.setdefault("web_listen", "127.0.0.1:0")
    settings = service.settings.model_copy(update=overrides)
    adapter = WebAdapter(settings, service.inbox, keepalive_s=0.5, checks=checks)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


@pytest.fixture
def browsers() -> Callable[..., Any]:
    """`async with browsers(url) as browser:` - a started browser with identity and CSRF cookies."""

    @asynccontextmanager
    async def make(url: str, *, start: bool = True, **options: Any) -> AsyncIterator[Browser]:
        browser = Browser(url, **options)
        try:
            if start:
                await browser.start()
            yield browser
        finally:
            await browser.close()

    return make
