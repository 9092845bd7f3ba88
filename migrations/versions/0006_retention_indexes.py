"""Indexes for retention and erasure: turns by author and by age.

`vlmbot data erase` and /forget find a user's turns by `user_id`; the daily prune finds old turns by
`created_at`. Without these both read the whole table.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_turns_user_id", "turns", ["user_id"])
    op.create_index("ix_turns_created_at", "turns", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_turns_created_at", table_name="turns")
    op.drop_index("ix_turns_user_id", table_name="turns")
