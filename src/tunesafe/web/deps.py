"""What every route needs: the store the app was started on, and 404s for records that are not there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from fastapi import HTTPException, Request

from tunesafe.errors import StoreUnavailable, UserError
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
    with absent_is_404(what):
        return store.get(record_id)


@contextmanager
def absent_is_404(what: str) -> Iterator[None]:
    """A UserError from looking `what` up becomes a 404 naming it; a record edited behind the store's back
    or a failing database stays what it is: never "no such record" for something that may be there."""
    try:
        yield
    except (DamagedRecord, StoreUnavailable):
        raise
    except UserError:
        not_found(what)
