"""What every route needs: the store the app was started on, and 404s for records that are not there."""

from __future__ import annotations

from typing import NoReturn

from fastapi import HTTPException, Request

from tunesafe.evidence.store import Store


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def not_found(what: str) -> NoReturn:
    raise HTTPException(404, f"no {what} in this store")
