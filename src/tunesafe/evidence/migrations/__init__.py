"""Alembic migrations of the evidence store; run programmatically by Store.open (no alembic.ini)."""
