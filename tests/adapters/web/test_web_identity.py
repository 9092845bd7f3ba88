"""Web identities are server-issued and signed (issue 11, finding 5): identity fixation, replayed.

The attack: another site on the same host (cookies are not isolated by port) sets the victim's
`vlmbot_client` cookie to a value the attacker chose, then reads the victim's conversations with it.
"""

from __future__ import annotations

import stat
from typing import Any

from yarl import URL

from adapters.web.identity import SECRET_FILE
from tests.adapters.web.conftest import new_thread, running_web
from tests.adapters.web.test_web_api import ask_with_picture

CHOSEN = "attacker-chosen-identity-0123456789"  # 16-64 characters: adopted as-is before the fix


async def test_an_identity_the_server_did_not_issue_is_replaced(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service, running_web(service) as adapter:
        async with browsers(adapter.url, start=False) as victim, browsers(adapter.url, start=False) as attacker:
            for browser in (victim, attacker):
                browser.http.cookie_jar.update_cookies({"vlmbot_client": CHOSEN}, URL(adapter.url))
            await victim.start()
            assert victim.cookie("vlmbot_client") not in (None, CHOSEN)  # replaced with a fresh, signed one
            view = await ask_with_picture(victim, new_thread(), "My private invoice?")
            session_id = view["session"]["id"]
            sha = view["turns"][0]["images"][0]

            # The attacker still holds the chosen value: it is nobody's identity.
            assert (await attacker.get("/api/sessions"))[0] == 401
            assert (await attacker.get(f"/api/sessions/{session_id}"))[0] == 401
            await attacker.start()
            assert attacker.me["user"] != victim.me["user"]
            assert (await attacker.get("/api/sessions"))[1] == {"sessions": []}
            for path in (f"/api/sessions/{session_id}", f"/api/sessions/{session_id}/images/{sha}",
                         f"/api/sessions/{session_id}/export", f"/api/threads/{view['session']['thread']}"):
                status, body = await attacker.get(path)
                assert status == 404 or body == {"session": None, "turns": []}, (path, status, body)

            # Nor does the victim's own cookie, altered, pass for another identity.
            real = victim.cookie("vlmbot_client")
            assert real is not None
            nonce, _, signature = real.partition(".")
            forged = ("A" if nonce[0] != "A" else "B") + nonce[1:] + "." + signature
            async with browsers(adapter.url, start=False) as other:
                other.http.cookie_jar.update_cookies({"vlmbot_client": forged}, URL(adapter.url))
                assert (await other.get("/api/sessions"))[0] == 401
                await other.start()
                assert other.cookie("vlmbot_client") != forged and other.me["user"] != victim.me["user"]
            assert [s["id"] for s in (await victim.get("/api/sessions"))[1]["sessions"]] == [session_id]


async def test_identities_are_issued_only_to_browsers_that_may_chat(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service, running_web(service, web_token="user-token-abcdef-123") as adapter:
        async with browsers(adapter.url) as stranger:
            assert stranger.me["user"] is None and stranger.cookie("vlmbot_client") is None
            status, body = await stranger.request("POST", "/api/login", json={"token": "user-token-abcdef-123"})
            assert status == 200 and stranger.cookie("vlmbot_client") is not None
            assert (await stranger.start())["user"] is not None


async def test_the_signing_key_is_private_and_survives_a_restart(service_factory: Any, browsers: Any) -> None:
    async with service_factory() as service:
        secret = service.settings.data_dir / SECRET_FILE
        async with running_web(service) as adapter, browsers(adapter.url) as browser:
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_bytes()) == 32
            view = await ask_with_picture(browser, new_thread())
            cookie = browser.cookie("vlmbot_client")
        key = secret.read_bytes()
        secret.chmod(0o644)  # widened by hand: made private again at start
        async with running_web(service) as adapter, browsers(adapter.url, start=False) as again:
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.read_bytes() == key
            again.http.cookie_jar.update_cookies({"vlmbot_client": cookie or ""}, URL(adapter.url))
            await again.start()
            assert again.cookie("vlmbot_client") == cookie  # still this server's identity
            assert [s["id"] for s in (await again.get("/api/sessions"))[1]["sessions"]] == [view["session"]["id"]]
