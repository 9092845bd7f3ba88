"""The Events API HTTP endpoint answers every malformed request with a JSON 4xx, never a 500 (issue 11,
finding 8): a non-numeric timestamp, undecodable bytes, and bodies that slack-bolt cannot parse, signed
or not. Requests are written byte by byte (headers that a client library would refuse included); after
the table the same endpoint still answers a real mention.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.adapters.slack.conftest import SIGNING_SECRET
from tests.adapters.slack.slack_standin import sign

CHANNEL = "C0HELP"
JSON = b"application/json"
FORM = b"application/x-www-form-urlencoded"


@pytest.fixture
def mode() -> str:
    return "http"  # signatures and the HTTP surface belong to the Events API


async def raw_request(url: str, method: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, str, bytes]:
    """One HTTP/1.1 request as bytes; (status, content type, body) of the answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = [method + b" " + parts.path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
            b"Content-Length: " + str(len(body)).encode()]
    head += [name + b": " + value for name, value in headers]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    header_block, _, content = rest.partition(b"\r\n\r\n")
    content_type = ""
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            content_type = value.strip().decode().split(";")[0]
    return int(status_line.split()[1]), content_type, content


def signed(body: bytes, content_type: bytes = JSON) -> list[tuple[bytes, bytes]]:
    ts = str(int(time.time()))
    return [(b"Content-Type", content_type), (b"X-Slack-Request-Timestamp", ts.encode()),
            (b"X-Slack-Signature", sign(SIGNING_SECRET, ts, body).encode())]


def with_timestamp(ts: bytes, body: bytes) -> list[tuple[bytes, bytes]]:
    """A timestamp header as given; the signature is computed over it as a signer would."""
    signature = sign(SIGNING_SECRET, ts.decode("utf-8", "replace"), body).encode()
    return [(b"Content-Type", JSON), (b"X-Slack-Request-Timestamp", ts), (b"X-Slack-Signature", signature)]


EVENT = json.dumps({"type": "event_callback", "team_id": "T0", "event": {"type": "message"}}).encode()
DEEP = b'{"type": "event_callback", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
NOT_UTF8 = b'{"type": "event_callback", "text": "\xff\xfe"}'
OUTSIDER = [(b"Content-Type", JSON), (b"X-Slack-Request-Timestamp", str(int(time.time())).encode()),
            (b"X-Slack-Signature", b"v0=" + b"0" * 64)]

MALFORMED: list[tuple[str, bytes, list[tuple[bytes, bytes]], bytes, int]] = [
    # (case, method, headers, body, status)
    ("a non-numeric timestamp", b"POST", with_timestamp(b"abc", EVENT), EVENT, 401),
    ("a timestamp in other digits", b"POST", with_timestamp("١٧٠٠٠٠٠٠٠٠".encode(), EVENT), EVENT, 401),
    ("a float timestamp", b"POST", with_timestamp(b"1e9", EVENT), EVENT, 401),
    ("a negative timestamp", b"POST", with_timestamp(b"-5", EVENT), EVENT, 401),
    ("a 40-digit timestamp", b"POST", with_timestamp(b"9" * 40, EVENT), EVENT, 401),
    ("undecodable timestamp bytes", b"POST", with_timestamp(b"\xff\xfe", EVENT), EVENT, 401),
    ("no signature headers", b"POST", [(b"Content-Type", JSON)], EVENT, 401),
    ("undecodable signature bytes", b"POST", signed(EVENT)[:2] + [(b"X-Slack-Signature", b"v0=\xff\xfe")], EVENT, 401),
    ("a non-ASCII signature", b"POST", signed(EVENT)[:2] + [(b"X-Slack-Signature", "v0=é".encode())], EVENT, 401),
    ("unsigned garbage JSON", b"POST", OUTSIDER, b"{not json", 401),
    ("an unsigned JSON list", b"POST", OUTSIDER, b"[1, 2]", 401),
    ("unsigned deep nesting", b"POST", OUTSIDER, DEEP, 401),
    ("unsigned non-UTF-8 bytes", b"POST", OUTSIDER, NOT_UTF8, 400),
    ("signed non-UTF-8 bytes", b"POST", signed(NOT_UTF8), NOT_UTF8, 400),
    ("a signed JSON list", b"POST", signed(b"[1, 2]"), b"[1, 2]", 400),
    ("signed garbage JSON", b"POST", signed(b"{not json"), b"{not json", 400),
    ("signed deep nesting", b"POST", signed(DEEP), DEEP, 400),
    ("a signed enterprise number", b"POST", signed(b'{"enterprise": 5}'), b'{"enterprise": 5}', 400),
    ("signed authorizations number", b"POST", signed(b'{"authorizations": 5}'), b'{"authorizations": 5}', 400),
    ("a signed form with a bad payload", b"POST", signed(b"payload=%7Bno", FORM), b"payload=%7Bno", 400),
    ("a signed form with a list payload", b"POST", signed(b"payload=%5B1%5D", FORM), b"payload=%5B1%5D", 400),
    ("a signed event that is a string", b"POST", signed(b'{"type": "event_callback", "event": "x"}'),
     b'{"type": "event_callback", "event": "x"}', 400),
    ("a 2 MB body", b"POST", OUTSIDER, b'{"x": "' + b"a" * 2_000_000 + b'"}', 413),
    ("GET", b"GET", [], b"", 405),
]


async def test_malformed_requests_get_a_json_4xx_and_slack_goes_on(make_bot) -> None:
    async with make_bot() as bot:
        url = bot.adapter.http_url
        answers: dict[str, tuple[int, str, bytes]] = {}
        for case, method, headers, body, _ in MALFORMED:
            answers[case] = await raw_request(url, method, headers, body)
        answers["another path"] = await raw_request(url.replace("/slack/events", "/other"), b"POST", OUTSIDER, b"{}")
        event = bot.slack.message_event(CHANNEL, f"<@{bot.slack.bot_user_id}> hello?", kind="app_mention")
        await bot.deliver(event)
        await bot.settle()
        assert len(bot.slack.bot_messages(CHANNEL, event["ts"])) == 1
    expected = {case: status for case, _, _, _, status in MALFORMED} | {"another path": 404}
    assert {case: status for case, (status, _, _) in answers.items()} == expected
    for case, (_, content_type, body) in answers.items():
        error: Any = json.loads(body).get("error")
        assert content_type == "application/json" and isinstance(error, str) and error, case
    assert json.loads(answers["a non-numeric timestamp"][2]) == {"error": "invalid request"}
