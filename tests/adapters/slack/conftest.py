"""Fixtures of the Slack adapter tests: the stand-in server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from tests.adapters.slack.slack_standin import EventsSender, SlackStandIn


@pytest_asyncio.fixture(loop_scope="function")
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as standin:
        yield standin


# --- the adapter on the tiny model, in Socket Mode or HTTP mode --------------------------------

SIGNING_SECRET = "test-signing-secret"


@dataclass
class Harness:
    """A running SlackAdapter wired to the stand-in; `deliver` sends events the way `mode` does."""

    mode: str
    slack: SlackStandIn
    adapter: Any
    service: Any
    acks: list[float] = field(default_factory=list)  # seconds until each delivery was acknowledged

    async def deliver(self, event: dict[str, Any], *, event_id: str | None = None, retries: int = 0) -> None:
        """Deliver an event callback; `retries` redeliveries follow as if acknowledgements were lost."""
        payload = self.slack.event_callback(event, event_id=event_id)
        if self.mode == "http":
            attempts = await EventsSender(self.adapter.http_url, SIGNING_SECRET).send(payload, extra_retries=retries)
            assert all(a.status == 200 for a in attempts), attempts
            self.acks += [a.seconds for a in attempts]
        else:
            for attempt in range(retries + 1):
                envelope_id = await self.slack.send_envelope("events_api", payload, retry_attempt=attempt)
                self.acks.append(await self.slack.wait_ack(envelope_id))

    async def interact(self, payload: dict[str, Any]) -> None:
        """Deliver an interaction payload (e.g. `slack.block_actions(...)`) and check it was acknowledged."""
        if self.mode == "http":
            attempt = await EventsSender(self.adapter.http_url, SIGNING_SECRET).interact(payload)
            assert attempt.status == 200, attempt
            self.acks.append(attempt.seconds)
        else:
            envelope_id = await self.slack.send_envelope("interactive", payload)
            self.acks.append(await self.slack.wait_ack(envelope_id))

    async def command(self, text: str, *, channel: str, user: str = "U0ALICE") -> None:
        payload = self.slack.command_payload(self.service.settings.slack_slash_command, text, channel=channel, user=user)
        if self.mode == "http":
            attempts = await EventsSender(self.adapter.http_url, SIGNING_SECRET, max_retries=0).send(payload, form=True)
            assert attempts[0].status == 200, attempts
        else:
            envelope_id = await self.slack.send_envelope("slash_commands", payload)
            self.acks.append(await self.slack.wait_ack(envelope_id))

    async def settle(self, timeout: float = 60.0) -> None:
        """Wait until the adapter finished the work it started."""
        await asyncio.wait_for(self.adapter.idle(), timeout)

    async def turns(self, thread_key: str) -> list[Any]:
        store = self.service.store
        sessions = await store.list_sessions(platform="slack", thread_key=thread_key)
        return [turn for s in sessions for turn in await store.turns(s.id)]


@pytest.fixture(params=["socket", "http"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_bot(slack: SlackStandIn, service_factory: Callable[..., Any], mode: str) -> Callable[..., Any]:
    """`async with make_bot(settings overrides..., adapter=dict(options)) as bot:`"""
    from adapters.slack import SlackAdapter

    @asynccontextmanager
    async def factory(adapter: dict[str, Any] | None = None, **overrides: Any):
        values: dict[str, Any] = {
            "slack_bot_token": slack.bot_token,
            "slack_api_url": slack.api_url,
            "slack_http_listen": "127.0.0.1:0",
            "slack_allow_everyone": True,
        }
        if mode == "socket":
            values["slack_app_token"] = slack.app_token
        else:
            values["slack_signing_secret"] = SIGNING_SECRET
        values.update(overrides)
        async with service_factory(**values) as service:
            options = {"update_interval": 0.05, **(adapter or {})}
            bot = SlackAdapter(service.settings, service.inbox, **options)
            await bot.start()
            try:
                yield Harness(mode, slack, bot, service)
            finally:
                await bot.stop()

    return factory
