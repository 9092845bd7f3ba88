"""The webhook route answers every malformed request with a JSON 4xx, never a 500 (issue 11, finding 8).

Each request carries the right secret token (the attacker is past the secret check, or is a buggy
proxy), except where the secret itself is the malformed part. After the whole table the same server
still answers a real update.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import Settings
from bot.messages import Answer
from tests.adapters.telegram.botapi_standin import BotApiStandIn
from tests.adapters.telegram.harness import ALLOWED_USER, Scripted, SettingsOnly, running_adapter, settle, shown_text

SECRET = "hook-secret_1"  # what running_adapter configures in webhook mode
JSON = {"Content-Type": "application/json"}


def _update(message: Any) -> bytes:
    return json.dumps({"update_id": 5, "message": message}).encode()


def _message(**fields: Any) -> dict[str, Any]:
    base = {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "from": {"id": 1, "is_bot": False,
                                                                                       "first_name": "Ann"}}
    return base | fields


MALFORMED: list[tuple[str, str, dict[str, str], bytes, int]] = [
    # (case, method, headers, body, status)
    ("a JSON list", "POST", JSON, b'[{"update_id": 1}]', 400),
    ("a JSON string", "POST", JSON, b'"update"', 400),
    ("a JSON number", "POST", JSON, b"42", 400),
    ("JSON null", "POST", JSON, b"null", 400),
    ("an empty body", "POST", JSON, b"", 400),
    ("not JSON", "POST", JSON, b"update_id=1", 400),
    ("100k-deep nesting", "POST", JSON, b'{"update_id": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
    ("nesting past the limit", "POST", JSON, b'{"update_id": 1, "x": ' + b"[" * 80 + b"]" * 80 + b"}", 400),
    ("non-UTF-8 bytes", "POST", JSON, b'{"update_id": 1, "message": "\xff\xfe"}', 400),
    ("an encoded lone surrogate", "POST", JSON, b'{"update_id": 1, "m": "\xed\xa0\x80"}', 400),
    ("an escaped lone surrogate", "POST", JSON, b'{"update_id": 1, "m": "\\ud800"}', 400),
    ("a lone surrogate in a key", "POST", JSON, b'{"update_id": 1, "\\udfff": 1}', 400),
    ("an unknown charset", "POST", {"Content-Type": "application/json; charset=no-such"}, b'{"update_id": 1', 400),
    ("no update_id", "POST", JSON, b'{"message": {}}', 400),
    ("a string update_id", "POST", JSON, b'{"update_id": "1"}', 400),
    ("a boolean update_id", "POST", JSON, b'{"update_id": true}', 400),
    ("a message that is a list", "POST", JSON, _update([1, 2]), 400),
    ("a message without chat or date", "POST", JSON, _update({"message_id": 1}), 400),
    ("a chat that is a string", "POST", JSON, _update({"message_id": 1, "date": 0, "chat": "x"}), 400),
    # python-telegram-bot accepts these two; the adapter could not read them (found by the fuzz test)
    ("a null chat", "POST", JSON, _update(_message(chat=None, text="hi")), 400),
    ("a text that is true", "POST", JSON, _update(_message(text=True)), 400),
    ("a 2 MB body", "POST", JSON, b'{"update_id": 1, "x": "' + b"a" * 2_000_000 + b'"}', 413),
    ("GET", "GET", {}, b"", 405),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.model_construct().model_copy(update={"data_dir": tmp_path})


async def _post(url: str, method: str, headers: dict[str, str], body: bytes) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, data=body, headers=headers) as response:
        return response.status, response.content_type, await response.json(content_type=None)


async def test_malformed_requests_get_a_json_4xx_and_the_bot_goes_on(standin: BotApiStandIn, settings: Settings) -> None:
    core = Scripted(Answer(text="Hello there.", turn_id=1, latency_ms=1, output_tokens=2))
    async with running_adapter(standin, SettingsOnly(settings), conversations=core, mode="webhook") as (adapter, _):
        assert standin.webhook is not None
        url = standin.webhook["url"]
        answers = {}
        for case, method, headers, body, _ in MALFORMED:
            answers[case] = await _post(url, method, {**headers, "X-Telegram-Bot-Api-Secret-Token": SECRET}, body)
        answers["a wrong secret"] = await _post(url, "POST", {**JSON, "X-Telegram-Bot-Api-Secret-Token": "x"}, b"[]")
        answers["another path"] = await _post(url.replace("/telegram/hook", "/other"), "POST", JSON, b"{}")
        # then a real update, through the same server
        await standin.inject(standin.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, text="hi"))
        await settle(standin, adapter)
    expected = {case: status for case, _, _, _, status in MALFORMED} | {"a wrong secret": 403, "another path": 404}
    assert {case: status for case, (status, _, _) in answers.items()} == expected
    for case, (_, content_type, body) in answers.items():
        assert content_type == "application/json" and isinstance(body.get("error"), str) and body["error"], case
    assert answers["a JSON list"][2] == {"error": "the body is not a JSON object"}
    assert [m.text for m in core.handled] == ["hi"]
    assert shown_text(standin, ALLOWED_USER) == ["Hello there."]
    assert standin.webhook_deliveries[-1][1] == 200


async def test_undecodable_secret_header_bytes_are_refused(standin: BotApiStandIn, settings: Settings) -> None:
    """Header bytes that are not UTF-8 reach the secret check as surrogates: 403, not a 500."""
    import asyncio

    core = Scripted()
    async with running_adapter(standin, SettingsOnly(settings), conversations=core, mode="webhook"):
        assert standin.webhook is not None
        url = aiohttp.client.URL(standin.webhook["url"])
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(
            b"POST " + url.path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Telegram-Bot-Api-Secret-Token: \xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        await writer.drain()
        response = await reader.read()
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.split()[1] == b"403"
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {"error": "wrong secret token"}
    assert core.handled == []
