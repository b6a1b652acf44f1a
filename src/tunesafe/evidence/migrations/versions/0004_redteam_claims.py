"""Red-team claims: one row per (schedule, period) that a `tunesafe redteam run-due` runner claimed, with
its lease. The unique key makes a claim atomic on SQLite and PostgreSQL alike (INSERT ... ON CONFLICT DO
NOTHING), so two runners started together never run one schedule twice in a period. Schedules themselves
are evidence records; this table only coordinates runners.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "redteam_claims",
        sa.Column("schedule_id", sa.String(40), primary_key=True),
        sa.Column("period", sa.String(40), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.String(40), nullable=True),
        sa.Column("record_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("redteam_claims")
