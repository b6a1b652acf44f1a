"""Incident pages: every incident with its EU AI Act Art. 73 clock (time left, overdue, or why it
stopped), one incident with its notes and linked records, and the dashboard's write: an update (status,
note) recorded as an INCIDENT_UPDATE evidence record whose actor is the signed-in user."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tunesafe.evidence.store import Store
from tunesafe.production import incidents as inc
from tunesafe.web.auth import Identity
from tunesafe.web.deps import absent_is_404, store_of
from tunesafe.web.drafts import STALE_CSRF, UNSENT, DraftForm, writer_or_refill
from tunesafe.web.forms import form_fields
from tunesafe.web.templating import page

router = APIRouter()


def incidents_list(
    store: Store, *, status: str | None = None, model: str | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    now = now or inc.utcnow()
    found = inc.list_incidents(store, model=model, status=status)
    # most urgent first: running clocks by deadline, then the stopped ones newest first
    running = sorted((i for i in found if not i.clock_stopped), key=lambda i: (i.deadline.due_at, i.id))
    stopped = sorted((i for i in found if i.clock_stopped), key=lambda i: -i.id)
    found = running + stopped
    return [i.as_dict(now) for i in found]


def path_id(text: str) -> int:
    """An incident in a URL, by number or by the INC-N label everything shows (UserError: 400)."""
    return inc.parse_id(text, where="URL")


def incident_detail(store: Store, incident_id: int, now: datetime | None = None) -> dict[str, Any]:
    with absent_is_404(f"incident {incident_id}"):
        found = inc.get_incident(store, incident_id)
    return found.as_dict(now or inc.utcnow())


def apply_update(
    store: Store, incident_id: int, who: Identity, *, status: str | None, note: str | None
) -> dict[str, Any]:
    """Record an update by `who`. Status "closed" closes the incident with the note as its resolution
    (root cause, corrective action). UserError (shown as 400) for a closed incident, a close without a
    resolution, or nothing to change; nothing is written then."""
    incident_detail(store, incident_id)
    if status == "closed":
        closed = inc.close_incident(store, incident_id, resolution=note or "", actor=who.evidence_actor)
        return closed.as_dict(inc.utcnow())
    updated = inc.update_incident(
        store, incident_id, status=status or None, note=note or None, actor=who.evidence_actor
    )
    return updated.as_dict(inc.utcnow())


@router.get("/incidents", response_class=HTMLResponse, include_in_schema=False)
def incidents_page(
    request: Request, status: str | None = Query(None), model: str | None = Query(None)
) -> HTMLResponse:
    rows = incidents_list(store_of(request), status=status or None, model=model or None)
    return page(
        request,
        "incidents.html.j2",
        {"incidents": rows, "statuses": inc.STATUSES, "status": status, "model": model or ""},
    )


UPDATE_FORM = DraftForm(
    action=re.compile(r"/incidents/([^/]+)/update"),
    page=lambda given: f"/incidents/{path_id(given)}",
    keeps=lambda field: field in ("note", "status"),
)


@router.get("/incidents/{incident_id}", response_class=HTMLResponse, include_in_schema=False)
def incident_page(
    request: Request,
    incident_id: str,
    note: str | None = Query(None, description="fills the update form in; nothing is recorded"),
    status: str | None = Query(None, description="selects a status in the update form"),
    unsent: bool = Query(False, description="say that the update in the form is not recorded yet"),
) -> HTMLResponse:
    return _page_with_draft(request, path_id(incident_id), note, status, UNSENT if unsent else None)


def _page_with_draft(
    request: Request,
    number: int,
    note: str | None,
    status: str | None,
    unsent: str | None,
    status_code: int = 200,
) -> HTMLResponse:
    statuses = (*inc.UPDATE_STATUSES, "closed")
    return page(
        request,
        "incident.html.j2",
        {
            "i": incident_detail(store_of(request), number),
            "update_statuses": statuses,
            "draft": {"note": note or "", "status": status if status in statuses else ""},
            "unsent": unsent,
        },
        status_code=status_code,
    )


@router.post("/incidents/{incident_id}/update", include_in_schema=False)
async def incident_update_form(request: Request, incident_id: str) -> Response:
    number = path_id(incident_id)
    fields = await form_fields(request)
    if (who := writer_or_refill(request, fields)) is None:
        return _page_with_draft(request, number, fields.get("note"), fields.get("status"), STALE_CSRF, 403)
    apply_update(store_of(request), number, who, status=fields.get("status"), note=fields.get("note"))
    return RedirectResponse(f"/incidents/{number}", status_code=303)
