"""Fixtures of the Slack adapter tests: the stand-in server."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parent))

from slack_standin import SlackStandIn  # noqa: E402


@pytest_asyncio.fixture(loop_scope="function")
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as standin:
        yield standin
