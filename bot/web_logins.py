"""The web chat's sign-ins in the database: hashed ids with an expiry, deleted at logout.

The browser holds a random login id; the table holds only its SHA-256, so reading the database
does not let anyone sign in. Every replica sees the same rows, so a logout on one ends the login
on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.schema import WebLoginRow

__all__ = ["LoginKind", "WebLogin", "WebLogins"]

LoginKind = Literal["user", "admin"]


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class WebLogin:
    kind: LoginKind
    token_mark: str
    expires_at: datetime


class WebLogins:
    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def add(self, id_hash: str, kind: LoginKind, token_mark: str, *, ttl_s: float) -> None:
        now = datetime.now(UTC)
        async with self._sessions() as db:
            db.add(
                WebLoginRow(
                    id_hash=id_hash,
                    kind=kind,
                    token_mark=token_mark,
                    created_at=now,
                    expires_at=now + timedelta(seconds=ttl_s),
                )
            )
            await db.commit()

    async def find(self, id_hash: str) -> WebLogin | None:
        """The login, unless it is unknown, revoked or expired."""
        async with self._sessions() as db:
            row = await db.get(WebLoginRow, id_hash)
        if row is None:
            return None
        expires_at = _aware(row.expires_at)
        if expires_at <= datetime.now(UTC):
            return None
        kind: LoginKind = "admin" if row.kind == "admin" else "user"
        return WebLogin(kind=kind, token_mark=row.token_mark, expires_at=expires_at)

    async def revoke(self, id_hashes: list[str]) -> None:
        if not id_hashes:
            return
        async with self._sessions() as db:
            await db.execute(delete(WebLoginRow).where(WebLoginRow.id_hash.in_(id_hashes)))
            await db.commit()

    async def prune(self) -> None:
        """Forget expired logins."""
        async with self._sessions() as db:
            await db.execute(delete(WebLoginRow).where(WebLoginRow.expires_at <= datetime.now(UTC)))
            await db.commit()
