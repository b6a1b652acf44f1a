"""Evaluation results: runs, attempt results (written as each attempt completes) and the response cache.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("model_ref", sa.String(500), nullable=False),
        sa.Column("model_hash", sa.String(64), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("n_planned", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_runs_config_hash", "runs", ["config_hash"])
    op.create_table(
        "attempt_results",
        sa.Column("pk", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("attempt_id", sa.String(40), nullable=False),
        sa.Column("behavior_id", sa.String(120), nullable=False),
        sa.Column("attack", sa.String(120), nullable=False),
        sa.Column("family", sa.String(80), nullable=False),
        sa.Column("category", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("attempt", sa.JSON(), nullable=False),
        sa.Column("generation", sa.JSON(), nullable=False),
        sa.Column("verdicts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.UniqueConstraint("run_id", "attempt_id"),
    )
    op.create_index("ix_attempt_results_run_id", "attempt_results", ["run_id"])
    op.create_table(
        "response_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("model_hash", sa.String(64), nullable=False),
        sa.Column("generation", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_response_cache_model_hash", "response_cache", ["model_hash"])


def downgrade() -> None:
    op.drop_table("response_cache")
    op.drop_table("attempt_results")
    op.drop_table("runs")
