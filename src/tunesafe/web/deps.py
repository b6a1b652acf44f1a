"""What every route needs: the store the app was started on, and 404s for records that are not there."""

from __future__ import annotations

from typing import NoReturn

from fastapi import HTTPException, Request

from tunesafe.errors import UserError
from tunesafe.evidence.store import DamagedRecord, Store
from tunesafe.types import EvidenceRecord

# The largest id SQLite INTEGER and PostgreSQL BIGINT hold: a path int past it makes the driver raise
# (OverflowError, a 500) instead of finding nothing.
MAX_RECORD_ID = 2**63 - 1


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def not_found(what: str) -> NoReturn:
    raise HTTPException(404, f"no {what} in this store")


def record_or_404(store: Store, record_id: int, what: str) -> EvidenceRecord:
    """The evidence record `record_id`; a 404 naming `what` when there is none."""
    if not 1 <= record_id <= MAX_RECORD_ID:
        not_found(what)
    try:
        return store.get(record_id)
    except DamagedRecord:
        raise  # there, but edited behind the store's back: say so, never "no such record"
    except UserError:
        not_found(what)
