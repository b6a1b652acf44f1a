"""Alembic environment. Store.open passes an open connection (inside the transaction that serializes
concurrent migrations) through `config.attributes["connection"]`; nothing is read from alembic.ini."""

from __future__ import annotations

from alembic import context

from tunesafe.evidence.schema import Base

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table instead.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
