"""Attempt-result history: results replaced by a later execution of the same attempt (eval --retry-errors)
move here, so attempt_results keeps one row per (run, attempt), the newest, and nothing is lost.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attempt_result_history",
        sa.Column("pk", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("attempt_id", sa.String(40), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_attempt_result_history_run_id", "attempt_result_history", ["run_id"])


def downgrade() -> None:
    op.drop_table("attempt_result_history")
