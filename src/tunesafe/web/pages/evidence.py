"""Evidence page: the chain's head and size, its records a page at a time (filter by type or subject),
one record in full, and the verify button, which runs the store's real verification (every hash
recomputed from the stored bytes) and names the first broken record."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from tunesafe.engine import results as run_store
from tunesafe.engine.verify import verify_store
from tunesafe.evidence.schema import ChainHead, RecordRow
from tunesafe.evidence.store import Store
from tunesafe.web.deps import record_or_404, store_of
from tunesafe.web.paging import PER_PAGE, clamp
from tunesafe.web.templating import page

router = APIRouter()


def chain_status(store: Store) -> dict[str, Any]:
    head = run_store.read(store, select(ChainHead.last_id, ChainHead.last_hash).where(ChainHead.id == 1))
    counts = run_store.read(
        store, select(RecordRow.type, func.count()).group_by(RecordRow.type).order_by(RecordRow.type)
    )
    return {
        "location": store.location,
        "head_id": head[0][0] if head else 0,
        "head_hash": head[0][1] if head else None,
        "by_type": {t: n for t, n in counts},
    }


def records_page(
    store: Store,
    *,
    type_: str | None = None,
    subject: str | None = None,
    page_no: int = 1,
    per_page: int = PER_PAGE,
) -> dict[str, Any]:
    """Newest first; no body (open a record for that)."""
    where = [RecordRow.type == type_] if type_ else []
    if subject:
        where.append(RecordRow.subject == subject)
    columns = (RecordRow.id, RecordRow.type, RecordRow.subject, RecordRow.actor, RecordRow.created_at)
    query = select(*columns, RecordRow.hash).where(*where)
    count = select(func.count()).select_from(RecordRow).where(*where)
    total = run_store.read(store, count)[0][0]
    pages, page_no = clamp(total, page_no, per_page)
    rows = run_store.read(
        store, query.order_by(RecordRow.id.desc()).limit(per_page).offset((page_no - 1) * per_page)
    )
    return {
        "total": total,
        "page": page_no,
        "pages": pages,
        "type": type_,
        "subject": subject,
        "records": [
            {"id": r[0], "type": r[1], "subject": r[2], "actor": r[3], "created_at": r[4], "hash": r[5]}
            for r in rows
        ],
    }


def record_detail(store: Store, record_id: int) -> dict[str, Any]:
    return asdict(record_or_404(store, record_id, f"evidence record #{record_id}"))


def verify_chain(store: Store) -> dict[str, Any]:
    result = verify_store(store)
    return {
        "ok": result.ok,
        "checked": result.checked,
        "head_id": result.head_id,
        "head_hash": result.head_hash,
        "first_bad": asdict(result.first_bad) if result.first_bad is not None else None,
    }


@router.get("/evidence", response_class=HTMLResponse, include_in_schema=False)
def evidence_page(
    request: Request,
    type: str | None = Query(None),
    subject: str | None = Query(None),
    page_no: int = Query(1, alias="page", ge=1),
) -> HTMLResponse:
    store = store_of(request)
    return page(
        request,
        "evidence.html.j2",
        {
            "status": chain_status(store),
            "verified": None,
            **records_page(store, type_=type or None, subject=subject or None, page_no=page_no),
        },
    )


@router.get("/evidence/verify", response_class=HTMLResponse, include_in_schema=False)
def verify_page(request: Request) -> HTMLResponse:
    store = store_of(request)
    return page(
        request,
        "evidence.html.j2",
        {"status": chain_status(store), "verified": verify_chain(store), **records_page(store)},
    )


@router.get("/evidence/{record_id}", response_class=HTMLResponse, include_in_schema=False)
def record_page(request: Request, record_id: int) -> HTMLResponse:
    return page(request, "record.html.j2", {"r": record_detail(store_of(request), record_id)})
