"""Model page: one inventory entry, its ancestry, its safety lineage as a graph (base -> data ->
training -> adapter -> model -> evaluations -> gates -> deployments -> guardrails -> incidents, from
tunesafe.governance.lineage), the status of every control in the catalogue, and every run and gate
with links. The one write here: a person's attestation of a control, recorded with the signed-in actor."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from tunesafe.evidence.store import Store
from tunesafe.governance.controls import attest_control, control_status, load_catalogue
from tunesafe.governance.lineage import collect_lineage
from tunesafe.governance.lineage_svg import render_svg
from tunesafe.production import endpoints as ep
from tunesafe.production import incidents as inc
from tunesafe.production import inventory as inv
from tunesafe.types import EvidenceRecord, RecordType
from tunesafe.web.auth import Identity
from tunesafe.web.deps import absent_is_404, not_found, store_of
from tunesafe.web.drafts import STALE_CSRF, UNSENT, DraftForm, writer_or_refill
from tunesafe.web.forms import form_fields
from tunesafe.web.pages.runs import runs_page
from tunesafe.web.paging import MAX_PER_PAGE, PER_PAGE
from tunesafe.web.templating import page

router = APIRouter()
FIELD_PREFIX = "field_"
ATTEST_FORM = DraftForm(
    action=re.compile(r"/models/(.+)/attest"),
    page=lambda name: f"/models/{quote(name)}",
    keeps=lambda field: field in ("control", "note") or field.startswith(FIELD_PREFIX),
)


def model_detail(
    store: Store, name: str, *, runs_page_no: int = 1, per_page: int = PER_PAGE
) -> dict[str, Any]:
    """The model and everything attached to it; its runs one page at a time (newest first), like /runs."""
    known = inv.inventory(store)
    with absent_is_404(f"model {name!r}"):
        model = inv.get_model(store, name, known)
    lineage = collect_lineage(store, name)
    controls = control_status(store, name)
    gates = [r for r in inv.attached_records(store, name) if r.type == RecordType.GATE_DECISION]
    runs = runs_page(store, name, page_no=runs_page_no, per_page=per_page)
    return {
        "model": model.as_dict(),
        "ancestry": [known[n].as_dict() for n in inv.ancestors(inv.bases(known), name)],
        "children": sorted(n for n, m in known.items() if m.base == name),
        "lineage": {
            "version": lineage.version,
            "model_record": lineage.model_record,
            "nodes": [{k: v for k, v in n.to_json().items() if k != "body"} for n in lineage.nodes],
        },
        "controls": controls.to_json(),
        "attestation_fields": {c.id: list(c.attestation) for c in load_catalogue().controls},
        "runs": runs["runs"],
        "runs_total": runs["total"],
        "runs_page": runs["page"],
        "runs_pages": runs["pages"],
        "gates": [_gate(r) for r in gates if r.body.get("candidate_model") == name],
        "incidents": [i.as_dict(inc.utcnow()) for i in inc.list_incidents(store, model=name)],
        "endpoints": [e.as_dict() for e in ep.endpoints(store).values() if e.model == name],
    }


def attest(
    store: Store, name: str, who: Identity, *, control: str, note: str, fields: dict[str, str]
) -> dict[str, Any]:
    """Record the signed-in person's attestation of one control; UserError (400) for a bad control or a
    missing field, and nothing is written then."""
    _require_model(store, name)
    if not who.named:  # a sign-off stands for a person: "api client" would be an attestation by nobody
        raise HTTPException(400, "an attestation needs the signer's name: send X-Tunesafe-Actor: NAME "
                                 "(1-80 letters, digits, spaces and . @ + - _)")
    record = attest_control(
        store, name, control, by=who.actor, note=note, fields=fields, actor=who.evidence_actor
    )
    return {"record_id": record.id, "hash": record.hash, "body": record.body}


def _require_model(store: Store, name: str) -> None:
    if name not in inv.inventory(store):
        not_found(f"model {name!r}")


def _gate(rec: EvidenceRecord) -> dict[str, Any]:
    return {
        "record_id": rec.id,
        "verdict": rec.body["verdict"],
        "created_at": rec.created_at,
        "base_run": rec.body["base"]["run_id"],
        "candidate_run": rec.body["candidate"]["run_id"],
    }


@router.get("/models/{name:path}", response_class=HTMLResponse, include_in_schema=False)
def model_page(
    request: Request,
    name: str,
    unsent: bool = Query(False, description="say that the attestation in the form is not recorded yet"),
    page_no: int = Query(1, alias="page", ge=1),
    per_page: int = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE),
) -> HTMLResponse:
    # control, note and field_* query parameters only fill that control's attestation form in
    return _page_with_draft(request, name, dict(request.query_params), UNSENT if unsent else None,
                            runs_page_no=page_no, per_page=per_page)


def _page_with_draft(
    request: Request, name: str, typed: dict[str, str], unsent: str | None, status_code: int = 200, *,
    runs_page_no: int = 1, per_page: int = PER_PAGE
) -> HTMLResponse:
    store = store_of(request)
    data = model_detail(store, name, runs_page_no=runs_page_no, per_page=per_page)
    graph = Markup(render_svg(collect_lineage(store, name)))  # built with html.escape throughout
    draft = {
        "control": typed.get("control", ""),
        "note": typed.get("note", ""),
        "fields": {k.removeprefix(FIELD_PREFIX): v for k, v in typed.items() if k.startswith(FIELD_PREFIX)},
    }
    return page(
        request,
        "model.html.j2",
        {**data, "graph": graph, "draft": draft, "unsent": unsent},
        status_code=status_code,
    )


@router.post("/models/{name:path}/attest", include_in_schema=False)
async def attest_form(request: Request, name: str) -> Response:
    fields = await form_fields(request)
    if (who := writer_or_refill(request, fields)) is None:
        return _page_with_draft(request, name, fields, STALE_CSRF, 403)
    given = {k.removeprefix(FIELD_PREFIX): v for k, v in fields.items() if k.startswith(FIELD_PREFIX)}
    attest(
        store_of(request),
        name,
        who,
        control=fields.get("control", ""),
        note=fields.get("note", ""),
        fields=given,
    )
    return RedirectResponse(f"/models/{name}#controls", status_code=303)
