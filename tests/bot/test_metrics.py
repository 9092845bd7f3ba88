"""The bot's own /metrics and /health: counted in the core as messages arrive through the real
Telegram adapter, scraped over HTTP and parsed with prometheus-client's parser."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.messages import Answer, Attachment, IncomingMessage, Text
from bot.monitoring import Monitoring, engine_probe
from tests.adapters.telegram.botapi_standin import BotApiStandIn
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    STRANGER,
    photo_sizes,
    png,
    running_adapter,
    settle,
)
from tests.engine.test_local_engine import slow_hook
from tests.engine.videos import clip
from tests.pdfs import coloured_pdf

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@asynccontextmanager
async def monitoring_of(service: Any, engine_url: str | None = None) -> AsyncIterator[Monitoring]:
    monitoring = Monitoring(
        "127.0.0.1:0", service.conversations.metrics, service.store.engine, engine_probe(service.engine, engine_url)
    )
    await monitoring.start()
    try:
        yield monitoring
    finally:
        await monitoring.stop()


async def get(monitoring: Monitoring, path: str, method: str = "GET") -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.request(method, f"http://127.0.0.1:{monitoring.port}{path}") as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def scrape(monitoring: Monitoring) -> Samples:
    status, content_type, text = await get(monitoring, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_messages_refusals_and_answers_through_telegram(service_factory) -> None:
    broken = b"\x89PNG\r\n\x1a\n but the rest is missing"
    async with (
        service_factory(max_new_tokens=6) as service,
        BotApiStandIn() as telegram,
        monitoring_of(service) as monitoring,
    ):
        monitoring.expect(["telegram"])
        status, _, body = await get(monitoring, "/health")
        assert status == 503 and '"telegram": false' in body  # starting
        async with running_adapter(telegram, service) as (adapter, _):
            monitoring.running("telegram")
            assert (await get(monitoring, "/health"))[0] == 200
            me = {"chat_id": ALLOWED_USER, "user_id": ALLOWED_USER}
            picture = png()
            await telegram.inject(telegram.message(**me, photo=photo_sizes(telegram, picture), caption="What is it?"))
            await settle(telegram, adapter)
            await telegram.inject(telegram.message(**me, text="And the colour?"))
            await telegram.inject(telegram.message(**me, text="/status"))
            await telegram.inject(telegram.message(**me, photo=photo_sizes(telegram, broken), caption="This one?"))
            await telegram.inject(telegram.message(chat_id=STRANGER, user_id=STRANGER, text="Let me in"))
            await settle(telegram, adapter)
            samples = await scrape(monitoring)
        monitoring.stopping()  # as the CLI does when shutdown begins
        assert (await get(monitoring, "/health"))[0] == 503

    received = "vlmbot_messages_received_total"
    assert value(samples, received, platform="telegram", kind="picture") == 2
    assert value(samples, received, platform="telegram", kind="text") == 1
    assert value(samples, received, platform="telegram", kind="command") == 1
    assert value(samples, received, platform="slack", kind="text") == 0  # every series exists from the start
    assert value(samples, "vlmbot_refusals_total", reason="access") == 1
    assert value(samples, "vlmbot_refusals_total", reason="picture") == 1
    assert value(samples, "vlmbot_refusals_total", reason="busy") == 0
    assert value(samples, "vlmbot_answers_total", outcome="done") == 2
    assert value(samples, "vlmbot_answers_total", outcome="failed") == 0
    assert value(samples, "vlmbot_queue_wait_seconds_count") == 2
    assert value(samples, "vlmbot_answer_seconds_count") == 2
    assert value(samples, "vlmbot_answer_seconds_bucket", le="+Inf") == 2
    assert value(samples, "vlmbot_active_conversations") == 1
    assert value(samples, "vlmbot_pictures_stored") == 1
    assert value(samples, "vlmbot_picture_bytes_stored") == len(picture)
    assert value(samples, "vlmbot_files_stored", kind="picture") == 1
    assert value(samples, "vlmbot_files_stored", kind="pdf") == value(samples, "vlmbot_files_stored", kind="video") == 0
    assert value(samples, "vlmbot_answers_in_progress") == 0
    assert value(samples, "vlmbot_up") == 1 and value(samples, "vlmbot_adapter_running", adapter="telegram") == 1


async def test_stored_files_by_kind_sum_to_the_pictures_stored(service_factory) -> None:
    """A PDF and a screen recording are counted apart from the pictures (by their recorded mime type); the
    old total keeps counting every file, as dashboards read it."""
    photo, pdf, recording = png(), coloured_pdf(2), clip(1.0)
    files = (Attachment(photo, "p.png", "image/png"), Attachment(pdf, "m.pdf", "application/pdf"), Attachment(recording, "s.mp4", "video/mp4"))
    async with service_factory(max_new_tokens=4) as service, monitoring_of(service) as monitoring:
        message = IncomingMessage("slack", "C1/1.0", "U1", "What do these show?", files)
        assert isinstance([reply async for reply in service.conversations.handle(message)][-1], Answer)
        samples = await scrape(monitoring)
        pages = value(samples, "vlmbot_files_stored", kind="picture") - 1
    assert pages == 2  # a PDF's rendered pages are pictures in the store
    assert value(samples, "vlmbot_files_stored", kind="pdf") == 1
    assert value(samples, "vlmbot_files_stored", kind="video") == 1
    assert value(samples, "vlmbot_pictures_stored") == 1 + 2 + 1 + 1
    assert value(samples, "vlmbot_file_bytes_stored", kind="pdf") == len(pdf)
    assert value(samples, "vlmbot_file_bytes_stored", kind="video") == len(recording)
    total = sum(value(samples, "vlmbot_file_bytes_stored", kind=kind) for kind in ("picture", "pdf", "video"))
    assert value(samples, "vlmbot_picture_bytes_stored") == total > len(photo) + len(pdf) + len(recording)


async def test_busy_and_answers_in_progress(service_factory) -> None:
    async with service_factory(max_new_tokens=300, queue_size=1) as service, monitoring_of(service) as monitoring:
        started = threading.Event()
        service.engine.generate_hook = slow_hook(service.engine, delay=0.02, started=started)

        async def ask(thread: str) -> list[Any]:
            message = IncomingMessage("slack", thread, "U1", "Explain everything")
            return [reply async for reply in service.conversations.handle(message)]

        first = asyncio.create_task(ask("C1/1.0"))
        await asyncio.to_thread(started.wait, 10)
        assert value(await scrape(monitoring), "vlmbot_answers_in_progress") == 1
        refused = await ask("C1/2.0")
        assert isinstance(refused[-1], Text) and "busy" in refused[-1].text
        await service.conversations.clear("slack", "C1/1.0")
        await asyncio.wait_for(first, 10)
        samples = await scrape(monitoring)
    assert value(samples, "vlmbot_refusals_total", reason="busy") == 1
    assert value(samples, "vlmbot_answers_total", outcome="failed") == 1
    assert value(samples, "vlmbot_answers_total", outcome="cancelled") == 1
    assert value(samples, "vlmbot_messages_received_total", platform="slack", kind="text") == 2


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_health_says_when_the_engine_does_not_answer(service_factory) -> None:
    url = f"http://127.0.0.1:{dead_port()}/v1"
    async with service_factory(engine_url=url) as service, monitoring_of(service, url) as monitoring:
        monitoring.expect(["web"])
        monitoring.running("web")
        status, content_type, body = await get(monitoring, "/health")
        assert status == 503 and content_type.startswith("application/json")
        assert '"status": "unavailable"' in body and "Connect" in body  # what the engine check saw
        assert value(await scrape(monitoring), "vlmbot_up") == 0
        replies = [r async for r in service.conversations.handle(IncomingMessage("web", "u/t", "u", "Hello?"))]
        assert isinstance(replies[-1], Text) and not isinstance(replies[-1], Answer)


async def test_other_requests_get_json_errors(service_factory) -> None:
    async with service_factory() as service, monitoring_of(service) as monitoring:
        for path, method, expected in [("/nothing", "GET", 404), ("/health", "POST", 405), ("/metrics", "DELETE", 405)]:
            status, content_type, body = await get(monitoring, path, method)
            assert status == expected and content_type.startswith("application/json") and '"error"' in body
