"""Database tables (SQLAlchemy 2 declarative). Alembic migrations in `migrations/` create them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.votes import Vote

__all__ = ["Base", "Delivery", "FeedbackRow", "ImageRow", "SessionRow", "TurnRow", "WebLoginRow"]


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    """A conversation. A thread has at most one `active` session; older ones are `archived`."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    thread_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    owner_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        # Exactly one active session per thread, even with several bot replicas racing.
        Index(
            "uq_sessions_active_thread",
            "platform",
            "thread_key",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_sessions_thread", "platform", "thread_key"),
    )


class TurnRow(Base):
    """One user input and the model's answer to it."""

    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    user_text: Mapped[str] = mapped_column(Text, default="")  # what the model reads
    # The preset command the user sent ("/find serial number") when `user_text` is its expanded prompt.
    command: Mapped[str | None] = mapped_column(String(255), nullable=True)
    image_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The PDFs and long screenshots some of `image_hashes` were made from (bot.picture_sources), or NULL.
    image_sources: Mapped[list[dict] | None] = mapped_column(JSON, nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The notes the answer came with, as the user read them (bot.turn_notes), or NULL.
    notes: Mapped[list[dict] | None] = mapped_column(JSON, nullable=True)
    # pending | done | failed | cancelled | interrupted | attached (pictures kept for the next question)
    status: Mapped[str] = mapped_column(String(16))
    in_context: Mapped[bool] = mapped_column(default=True)
    # The bot instance (VLMBOT_INSTANCE_ID) that wrote the turn and answers it.
    instance: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    queue_wait_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ttft_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        # Erasure finds a user's turns, the retention prune old turns (migration 0006).
        Index("ix_turns_user_id", "user_id"),
        Index("ix_turns_created_at", "created_at"),
    )


class ImageRow(Base):
    """A stored picture: the file is `images/<sha256[:2]>/<sha256>` under the data dir."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    mime_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """A platform delivery (update id, event id) already claimed: makes handling exactly-once."""

    __tablename__ = "deliveries"

    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# A PostgreSQL enum type; elsewhere a string column with a CHECK constraint. Stored by value ("up").
_VOTE_TYPE = Enum(
    Vote,
    name="feedback_vote",
    values_callable=lambda members: [member.value for member in members],
    create_constraint=True,
    length=8,
)


class FeedbackRow(Base):
    """A user's vote on a final answer: one per user and turn, changed in place (see `Store.vote`)."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    # The platform of the turn's session; user ids are only unique within their platform.
    platform: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(128))
    vote: Mapped[Vote] = mapped_column(_VOTE_TYPE)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the user's first vote
    voted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the current vote

    __table_args__ = (
        UniqueConstraint("turn_id", "platform", "user_id", name="uq_feedback_turn_user"),
        Index("ix_feedback_voted_at", "voted_at"),
    )


class WebLoginRow(Base):
    """A sign-in to the web chat. The browser holds a random id; only its SHA-256 is stored here."""

    __tablename__ = "web_logins"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # user | admin
    # A keyed hash of the token the login was made with: changing the token ends every such login.
    token_mark: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
