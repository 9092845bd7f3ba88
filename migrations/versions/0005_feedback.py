"""Feedback: a user's thumbs up or down on an answer, one per user and turn.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Spelled out rather than imported from bot.schema: a migration must not change when the models do.
_VOTE = sa.Enum("up", "down", name="feedback_vote", create_constraint=True, length=8)


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("turn_id", sa.Integer, sa.ForeignKey("turns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("vote", _VOTE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voted_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("turn_id", "platform", "user_id", name="uq_feedback_turn_user"),
    )
    op.create_index("ix_feedback_voted_at", "feedback", ["voted_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_voted_at", table_name="feedback")
    op.drop_table("feedback")
    # PostgreSQL keeps the enum type after its table is gone; the next upgrade would fail to create it.
    _VOTE.drop(op.get_bind(), checkfirst=True)
