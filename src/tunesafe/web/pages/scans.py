"""Data scans page: every screening of a fine-tuning dataset (its hash, rating, reasons and counts). The
scan records hold no example text, so nothing from a dataset is shown here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tunesafe.evidence.store import Store
from tunesafe.types import RecordType
from tunesafe.web.deps import store_of
from tunesafe.web.templating import page

router = APIRouter()


def scans_list(store: Store) -> list[dict[str, Any]]:
    out = []
    for rec in reversed(list(store.records(type=RecordType.DATA_SCAN))):
        body = rec.body
        dataset = body.get("dataset", {})
        out.append(
            {
                "record_id": rec.id,
                "created_at": rec.created_at,
                "subject": rec.subject,
                "path": dataset.get("path"),
                "sha256": dataset.get("sha256"),
                "examples": dataset.get("examples"),
                "rating": body.get("rating"),
                "reasons": body.get("reasons", []),
                "counts": body.get("counts", {}),
            }
        )
    return out


@router.get("/scans", response_class=HTMLResponse, include_in_schema=False)
def scans_page(request: Request) -> HTMLResponse:
    return page(request, "scans.html.j2", {"scans": scans_list(store_of(request))})
