"""The JSON API under /api/v1: everything the pages show, from the same data functions (so a figure on a
page and in the API is the same value), plus the one write. OpenAPI at /api/v1/openapi.json; /api lists
the endpoints as a page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from tunesafe.web import schemas as S
from tunesafe.web.deps import store_of
from tunesafe.web.pages import evidence, gates, incidents, inventory, models, runs, scans, schedules
from tunesafe.web.paging import MAX_PER_PAGE, PER_PAGE

router = APIRouter(prefix="/api/v1", tags=["dashboard"])
_PAGE = Query(1, ge=1, description=f"page number; {PER_PAGE} items a page unless per_page says")
_PER_PAGE = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE)


def _json(data: Any) -> JSONResponse:
    return JSONResponse(jsonable_encoder(data))


@router.get(
    "/session",
    response_model=S.Session,
    summary="Who is signed in, whether writes are allowed, and the CSRF token for them",
)
def session(request: Request) -> JSONResponse:
    access = request.app.state.access
    who = access.identify(request)
    return _json(
        {
            "writable": access.writable and access.writes_off is None,
            "signed_in": who is not None,
            "actor": who.actor if who else None,
            "csrf_token": access.csrf_token(who.session) if who else None,
        }
    )


@router.get(
    "/models",
    response_model=list[S.InventoryRow],
    summary="Inventory: every model with its stage, base, last gate and flags",
)
def list_models(
    request: Request,
    stage: str | None = None,
    flag: str | None = Query(None, description=", ".join(inventory.FLAGS)),
    q: str | None = None,
    sort: str = "name",
    desc: bool = False,
) -> JSONResponse:
    return _json(
        inventory.inventory_rows(store_of(request), stage=stage, flag=flag, q=q, sort=sort, desc=desc)
    )


@router.get(
    "/models/{name:path}",
    response_model=S.ModelDetail,
    summary="One model: ancestry, lifecycle evidence, runs, gates, incidents",
)
def get_model(request: Request, name: str, page: int = _PAGE, per_page: int = _PER_PAGE) -> JSONResponse:
    """`runs` is one page of the model's runs, newest first; `runs_total` counts them all."""
    return _json(models.model_detail(store_of(request), name, runs_page_no=page, per_page=per_page))


@router.post(
    "/models/{name:path}/attestations",
    response_model=S.Attestation,
    summary="Attest a control for the model's current version (needs the token and X-CSRF-Token); "
    "recorded as evidence with the actor",
)
def attest_control(
    request: Request,
    name: str,
    attestation: dict[str, Any] = Body(
        ..., examples=[{"control": "PRE-04", "note": "reviewed", "fields": {"approved_by": "J. Doe"}}]
    ),
) -> JSONResponse:
    who = request.app.state.access.require_writer(request, None)
    fields = attestation.get("fields") or {}
    if not isinstance(fields, dict):
        raise HTTPException(422, "fields: an object of field name -> text")
    return _json(
        models.attest(
            store_of(request),
            name,
            who,
            control=str(attestation.get("control", "")),
            note=str(attestation.get("note", "")),
            fields={str(k): str(v) for k, v in fields.items()},
        )
    )


# The run and gate lists stay bare lists (what clients read before they were paged); the total rides in a
# header, and a page past the end is empty, so a client reading pages until an empty one stops.
TOTAL_HEADER = "X-Total-Count"
_PAGED: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            TOTAL_HEADER: {"description": "items in all pages", "schema": {"type": "integer"}}
        }
    }
}


def _list_page(data: dict[str, Any], key: str, page: int) -> JSONResponse:
    items = data[key] if page <= data["pages"] else []
    return JSONResponse(jsonable_encoder(items), headers={TOTAL_HEADER: str(data["total"])})


@router.get(
    "/runs",
    response_model=list[S.RunSummary],
    responses=_PAGED,
    summary="Evaluation runs, newest first, a page at a time",
)
def list_runs(
    request: Request, model: str | None = None, page: int = _PAGE, per_page: int = _PER_PAGE
) -> JSONResponse:
    return _list_page(runs.runs_page(store_of(request), model, page_no=page, per_page=per_page), "runs", page)


@router.get(
    "/runs/{run_id}", response_model=S.RunPage, summary="One run: stored metrics and a page of its attempts"
)
def get_run(
    request: Request,
    run_id: str,
    page: int = Query(1, ge=1),
    per_page: int = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE),
    family: str | None = None,
    category: str | None = None,
    kind: str | None = None,
    errors: bool = False,
) -> JSONResponse:
    return _json(
        runs.run_page(
            store_of(request),
            request.app.state.run_states,
            run_id,
            page_no=page,
            per_page=per_page,
            filters={"family": family, "category": category, "kind": kind},
            errors_only=errors,
        )
    )


@router.get(
    "/runs/{run_id}/attempts/{attempt_id}",
    response_model=S.AttemptDetail,
    summary="One attempt: messages, answer, every verdict",
)
def get_attempt(request: Request, run_id: str, attempt_id: str) -> JSONResponse:
    return _json(runs.attempt_detail(store_of(request), run_id, attempt_id))


@router.get(
    "/gates",
    response_model=list[S.GateRow],
    responses=_PAGED,
    summary="Gate decisions, newest first, a page at a time",
)
def list_gates(request: Request, page: int = _PAGE, per_page: int = _PER_PAGE) -> JSONResponse:
    return _list_page(gates.gates_page(store_of(request), page_no=page, per_page=per_page), "gates", page)


@router.get(
    "/gates/{record_id}",
    response_model=S.GateView,
    summary="One gate decision (the evidence body) and its family x category cells",
)
def get_gate(request: Request, record_id: int) -> JSONResponse:
    return _json(gates.gate_view(store_of(request), record_id))


@router.get(
    "/gates/{record_id}/cells",
    response_model=S.CellPairs,
    summary="The paired attempts of one family x category cell",
)
def get_cell(
    request: Request,
    record_id: int,
    family: str,
    category: str,
    discordant: bool = False,
    page: int = Query(1, ge=1),
) -> JSONResponse:
    return _json(
        gates.cell_pairs(
            store_of(request),
            record_id,
            family=family,
            category=category,
            discordant=discordant,
            page_no=page,
        )
    )


@router.get(
    "/gates/{record_id}/pairs/{attempt_id}",
    response_model=S.PairDetail,
    summary="One attempt on both models, with all verdicts",
)
def get_pair(request: Request, record_id: int, attempt_id: str) -> JSONResponse:
    return _json(gates.pair_detail(store_of(request), record_id, attempt_id))


@router.get(
    "/incidents",
    response_model=list[S.Incident],
    summary="Incidents with their Art. 73 clocks, most urgent first",
)
def list_incidents(request: Request, status: str | None = None, model: str | None = None) -> JSONResponse:
    return _json(incidents.incidents_list(store_of(request), status=status, model=model))


@router.get("/incidents/{incident_id}", response_model=S.Incident, summary="One incident")
def get_incident(request: Request, incident_id: str) -> JSONResponse:
    return _json(incidents.incident_detail(store_of(request), incidents.path_id(incident_id)))


@router.post(
    "/incidents/{incident_id}/updates",
    response_model=S.Incident,
    summary="Update an incident (needs the token and the CSRF "
    "token in X-CSRF-Token); recorded as evidence with the actor",
)
def update_incident(
    request: Request,
    incident_id: str,
    change: dict[str, str | None] = Body(..., examples=[{"status": "investigating", "note": "triaged"}]),
) -> JSONResponse:
    who = request.app.state.access.require_writer(request, None)
    return _json(
        incidents.apply_update(
            store_of(request), incidents.path_id(incident_id), who, status=change.get("status"),
            note=change.get("note")
        )
    )


@router.get(
    "/schedules",
    response_model=list[S.Schedule],
    summary="Red-team schedules, their current period and recent runs",
)
def list_schedules(request: Request) -> JSONResponse:
    return _json(schedules.schedules_list(store_of(request)))


@router.get("/scans", response_model=list[S.Scan], summary="Fine-tuning data scans")
def list_scans(request: Request) -> JSONResponse:
    return _json(scans.scans_list(store_of(request)))


@router.get(
    "/evidence", response_model=S.EvidencePage, summary="Chain status and a page of records (newest first)"
)
def list_evidence(
    request: Request, type: str | None = None, subject: str | None = None, page: int = Query(1, ge=1)
) -> JSONResponse:
    store = store_of(request)
    return _json(
        {
            "status": evidence.chain_status(store),
            **evidence.records_page(store, type_=type, subject=subject, page_no=page),
        }
    )


@router.get(
    "/evidence/verify",
    response_model=S.Verification,
    summary="Verify the whole hash chain now (recomputes every hash)",
)
def verify(request: Request) -> JSONResponse:
    return _json(evidence.verify_chain(store_of(request)))


@router.get("/evidence/{record_id}", response_model=S.Record, summary="One evidence record in full")
def get_record(request: Request, record_id: int) -> JSONResponse:
    return _json(evidence.record_detail(store_of(request), record_id))
