"""Upload limits that hold without a Content-Length, and a cap on pictures decoded at once (issue 11, finding 11).

Before: the byte ceiling was checked only against Content-Length, so a chunked body streamed on
for as long as the client liked (an unknown field was read to the void, a preamble without a
boundary was read to its end), and every upload was decoded at once: 4 concurrent 64-megapixel
PNGs took the server to 2 GB.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import adapters.web.uploads as uploads
from adapters.web.uploads import PictureChecks, UploadLimits
from tests.adapters.web.conftest import Browser, new_thread, running_web
from tests.conftest import picture_bytes

MAX_BYTES = 200_000
CEILING = UploadLimits(max_file_bytes=MAX_BYTES, max_files=8, max_source_pixels=1).ceiling
CHUNK = b"\x00" * 65_536


def chunked(head: bytes, filler: bytes, total: int, sent: list[int]) -> Callable[[], AsyncIterator[bytes]]:
    """A body without Content-Length: `head`, then `filler` repeated up to `total` bytes; `sent` counts."""

    async def body() -> AsyncIterator[bytes]:
        yield head
        sent[0] += len(head)
        while sent[0] < total:
            yield filler
            sent[0] += len(filler)

    return body


async def post_chunked(browser: Browser, body: Callable[[], AsyncIterator[bytes]]) -> tuple[int, Any]:
    headers = browser.headers({"Content-Type": "multipart/form-data; boundary=xyz"})
    async with browser.http.post(
        f"{browser.base}/api/threads/{new_thread()}/messages", data=body(), headers=headers
    ) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in response.request_info.headers
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("head", "filler"),
    [
        (b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n'
         b'--xyz\r\nContent-Disposition: form-data; name="padding"\r\n\r\n', CHUNK),
        (b"", b"preamble line without any boundary\r\n" * 2000),
        (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
         b"Content-Type: image/png\r\n" + b"X-Padding: " + b"p" * 8000 + b"\r\n", b"X-More: " + b"q" * 8000 + b"\r\n"),
    ],
    ids=["endless-unknown-field", "endless-preamble", "endless-part-headers"],
)
async def test_a_chunked_upload_past_the_ceiling_is_refused(
    service_factory: Any, browsers: Any, head: bytes, filler: bytes
) -> None:
    async with service_factory(max_image_bytes=MAX_BYTES) as service, running_web(service) as adapter:
        async with browsers(adapter.url) as browser:
            sent = [0]
            status, body = await post_chunked(browser, chunked(head, filler, 4 * CEILING, sent))
            assert status in (400, 413), body
            assert "\n" not in body["error"]
            if status == 413:
                assert "too large" in body["error"]
            assert await service.store.list_sessions(platform="web") == []


async def test_the_ceiling_is_counted_across_parts(service_factory: Any, browsers: Any) -> None:
    """Parts each under their own limit still add up to the request's ceiling."""
    field = b'--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\n' + b"n" * 60_000 + b"\r\n"
    async with service_factory(max_image_bytes=MAX_BYTES) as service, running_web(service) as adapter:
        async with browsers(adapter.url) as browser:
            sent = [0]
            status, body = await post_chunked(browser, chunked(b"", field, 4 * CEILING, sent))
            assert status == 413 and "too large" in body["error"]


async def test_a_chunked_upload_within_the_ceiling_is_answered(service_factory: Any, browsers: Any) -> None:
    red = picture_bytes(color=(220, 20, 20))
    parts = (
        b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nWhat colour?\r\n'
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="red.png"\r\nContent-Type: image/png\r\n\r\n'
        + red + b"\r\n--xyz--\r\n"
    )

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(parts), 1000):
            yield parts[start : start + 1000]

    async with service_factory(max_image_bytes=MAX_BYTES) as service, running_web(service) as adapter:
        async with browsers(adapter.url) as browser:
            headers = browser.headers({"Content-Type": "multipart/form-data; boundary=xyz"})
            async with browser.http.post(
                f"{browser.base}/api/threads/{new_thread()}/messages", data=body(), headers=headers
            ) as response:
                assert response.status == 200 and b"event: answer" in await response.read()


async def test_concurrent_uploads_never_decode_more_pictures_than_the_cap(
    service_factory: Any, browsers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = 2
    lock = threading.Lock()
    gate = threading.Event()
    seen = {"now": 0, "peak": 0, "entered": 0}
    real = uploads.check_picture

    def held_check(*args: Any, **kwargs: Any) -> Any:
        with lock:
            seen["now"] += 1
            seen["entered"] += 1
            seen["peak"] = max(seen["peak"], seen["now"])
        try:
            gate.wait(timeout=60)  # every decode that got a slot stays in it until the test opens the gate
            return real(*args, **kwargs)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(uploads, "check_picture", held_check)
    pictures = [picture_bytes(size=(64 + i, 48), color=(40 * i, 90, 160)) for i in range(4)]
    async with service_factory(max_image_bytes=MAX_BYTES, web_picture_decodes=cap) as service:
        checks = PictureChecks(UploadLimits(max_file_bytes=MAX_BYTES, max_files=8, max_source_pixels=10**7, max_decodes=cap))
        async with running_web(service, checks=checks) as adapter:
            async with browsers(adapter.url) as browser:
                asks = [
                    asyncio.create_task(browser.ask(new_thread(), "Which colour?", files=[(f"p{i}.png", data, "image/png")]))
                    for i, data in enumerate(pictures)
                ]
                for _ in range(600):  # all four uploads have arrived: two decode, two wait for a slot
                    if checks.decoding == cap and checks.waiting == len(pictures) - cap:
                        break
                    await asyncio.sleep(0.05)
                assert (checks.decoding, checks.waiting) == (cap, len(pictures) - cap)
                assert seen["peak"] == cap and seen["entered"] == cap
                gate.set()
                results = await asyncio.gather(*asks)
    assert [status for status, _ in results] == [200] * len(pictures)
    assert seen["peak"] == cap and seen["entered"] == len(pictures)
