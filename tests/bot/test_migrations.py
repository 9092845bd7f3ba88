"""Alembic migrations upgrade and downgrade on a temporary SQLite file."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from bot.cli import main
from bot.migrate import downgrade_database, upgrade_database


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    await engine.dispose()
    return names


async def _turn_columns(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: {c["name"] for c in inspect(sync).get_columns("turns")})
    await engine.dispose()
    return names


async def test_upgrade_then_downgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    engine = create_async_engine(url)
    await upgrade_database(engine)
    await engine.dispose()
    assert {"sessions", "turns", "images", "deliveries", "feedback", "web_logins", "alembic_version"} <= await _tables(url)
    engine = create_async_engine(url)
    await downgrade_database(engine, "0003")
    await engine.dispose()
    assert "web_logins" not in await _tables(url) and "turns" in await _tables(url)
    engine = create_async_engine(url)
    await upgrade_database(engine)
    await downgrade_database(engine, "0007")  # the turns' notes (0008) go, the turns stay
    assert "notes" not in await _turn_columns(url) and "image_sources" in await _turn_columns(url)
    await upgrade_database(engine)
    assert "notes" in await _turn_columns(url)
    await downgrade_database(engine, "base")
    await engine.dispose()
    assert await _tables(url) == {"alembic_version"}
    engine = create_async_engine(url)
    await upgrade_database(engine)  # and up again: downgrade left nothing behind that blocks it
    await engine.dispose()
    assert "turns" in await _tables(url)


def test_db_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLMBOT_DATA_DIR", str(tmp_path))
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "vlmbot.db").exists()
    assert main(["db", "downgrade", "base"]) == 0
