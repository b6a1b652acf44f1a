"""The model ids an HTTP server's replies named, per run, summed over every session that ran it: a run
resumed in a later session (a provider may move an alias in between) reports all of them, not only the
last session's.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("reported_models", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "reported_models")
