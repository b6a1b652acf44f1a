"""Monitoring of live traffic (`tunesafe monitor ingest`): production logs are high volume, so each log
record is one compact row here, never an evidence record (an ingest batch writes one evidence record with
counts and a digest over its rows).

- monitor_records: one row per (model, log record), keyed by the record's content hash, so re-ingesting a
  file (or the same lines from another path or stdin) adds nothing. Flags and category only; the
  conversation is kept for flagged records alone (what an incident needs).
- monitor_sources: how far each (model, file) was read (byte offset, line) and a hash of the file's first
  bytes, so a re-run resumes and a rotated or replaced file is read from the start.
- monitor_alerts: which policy threshold opened an incident for which (model, day), so a window opens
  at most one incident per threshold (the unique key is the claim, on SQLite and PostgreSQL alike).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_records",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("record_hash", sa.String(64), primary_key=True),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("batch", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("refused", sa.Boolean(), nullable=True),
        sa.Column("harmful", sa.Boolean(), nullable=True),
        sa.Column("request_harmful", sa.Boolean(), nullable=True),
        sa.Column("jailbreak", sa.String(120), nullable=True),
        sa.Column("category", sa.String(80), nullable=True),
        sa.Column("conversation", sa.JSON(), nullable=True),
    )
    op.create_index("ix_monitor_records_model_day", "monitor_records", ["model", "day"])
    op.create_index("ix_monitor_records_batch", "monitor_records", ["batch"])
    op.create_table(
        "monitor_sources",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("head_len", sa.Integer(), nullable=False),
        sa.Column("head_sha256", sa.String(64), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "monitor_alerts",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("rule", sa.String(40), primary_key=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("monitor_alerts")
    op.drop_table("monitor_sources")
    op.drop_table("monitor_records")
