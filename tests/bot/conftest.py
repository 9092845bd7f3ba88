"""Database fixtures: a fresh PostgreSQL database per test, when a server is reachable.

The server comes from VLMBOT_TEST_POSTGRES_URL (an SQLAlchemy URL such as
postgresql+asyncpg://vlmbot:vlmbot@127.0.0.1:5432/vlmbot) or, when unset, the default below,
which `.ci/postgres.sh` sets up. The role needs CREATEDB: every test gets its own database,
dropped afterwards. Without a server the tests skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://vlmbot:vlmbot@/vlmbot?host=/var/run/postgresql"
HOW_TO_ENABLE = (
    "start one with `sudo bash .ci/postgres.sh` and export VLMBOT_TEST_POSTGRES_URL=<the URL it prints> "
    "(a role with CREATEDB)"
)


def _server_url() -> str:
    return os.environ.get("VLMBOT_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def _asyncpg_dsn(url: str, database: str | None = None) -> tuple[str, dict[str, str]]:
    """The plain libpq-style DSN asyncpg takes, plus a socket host given as a query parameter."""
    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    query = dict(parsed.query)
    host = query.pop("host", None)
    dsn = parsed.set(drivername="postgresql", query=query).render_as_string(hide_password=False)
    return dsn, ({"host": host} if isinstance(host, str) else {})


async def _connect(url: str, database: str | None = None):
    import asyncpg

    dsn, extra = _asyncpg_dsn(url, database)
    return await asyncpg.connect(dsn, timeout=5, **extra)


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL tests need a server ({reason}); {HOW_TO_ENABLE}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the PostgreSQL tests, but: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The SQLAlchemy URL of an empty database that exists for this test only."""
    server = _server_url()
    try:
        admin = await _connect(server)
    except ImportError:
        _unavailable("the asyncpg package is not installed")
    except Exception as exc:  # OSError, TimeoutError, or asyncpg's own errors for auth and missing roles
        _unavailable(f"{server} is not reachable: {type(exc).__name__}: {exc}")
    name = f"vlmbot_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        admin = await _connect(server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs on a fresh SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'vlmbot.db'}"
    return request.getfixturevalue("postgres_url")
