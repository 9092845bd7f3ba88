"""Fixtures for the Telegram adapter tests: the Bot API stand-in on an ephemeral port."""

from __future__ import annotations

import pytest_asyncio

from tests.adapters.telegram.botapi_standin import BotApiStandIn


@pytest_asyncio.fixture(loop_scope="function")
async def standin():
    async with BotApiStandIn() as api:
        yield api
