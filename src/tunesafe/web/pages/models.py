"""Model page: one inventory entry, its ancestry, the evidence about it laid out along the fine-tuning
lifecycle (base -> data -> training -> adapter -> evals -> gates -> guardrails -> incidents), and every
run and gate with links."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.production import endpoints as ep
from tunesafe.production import incidents as inc
from tunesafe.production import inventory as inv
from tunesafe.types import EvidenceRecord, RecordType
from tunesafe.web.deps import not_found, store_of
from tunesafe.web.pages.runs import runs_list
from tunesafe.web.templating import page

router = APIRouter()

# Lifecycle stage of each record type, in the order the page lays them out.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("data", (RecordType.DATA_SCAN, RecordType.DATA_MIX)),
    ("training", (RecordType.TRAINING_RUN, RecordType.TRAINING_EVENT)),
    ("adapter", (RecordType.ADAPTER_PROJECTION,)),
    ("evals", (RecordType.RUN, RecordType.SAFETY_EVAL, RecordType.JUDGE_AUDIT, RecordType.REDTEAM_RUN)),
    ("gates", (RecordType.GATE_DECISION, RecordType.ESCALATION)),
    ("guardrails", (RecordType.ENDPOINT, RecordType.GUARDRAIL_VERIFICATION)),
    ("incidents", (RecordType.INCIDENT, RecordType.INCIDENT_UPDATE, RecordType.REGRESSION_SUITE)),
)


def model_detail(store: Store, name: str) -> dict[str, Any]:
    known = inv.inventory(store)
    try:
        model = inv.get_model(store, name, known)
    except UserError:
        not_found(f"model {name!r}")
    ancestry = [known[n].as_dict() for n in inv.ancestors(inv.bases(known), name)]
    records = inv.attached_records(store, name)
    endpoint_names = {e.name for e in ep.endpoints(store).values() if e.model == name}
    for endpoint in endpoint_names:  # guardrail evidence is about the endpoint that serves the model
        records += list(store.records(subject=endpoint))
    records += [
        r
        for r in store.records(type=RecordType.GUARDRAIL_VERIFICATION)
        if r.body.get("endpoint") in endpoint_names and r.subject not in endpoint_names
    ]
    unique = {r.id: r for r in records}
    return {
        "model": model.as_dict(),
        "ancestry": ancestry,
        "children": sorted(n for n, m in known.items() if m.base == name),
        "lifecycle": lifecycle(model, [unique[i] for i in sorted(unique)]),
        "runs": runs_list(store, name),
        "gates": [_gate(r) for r in unique.values() if r.type == RecordType.GATE_DECISION],
        "incidents": [i.as_dict(inc.utcnow()) for i in inc.list_incidents(store, model=name)],
        "endpoints": [e.as_dict() for e in ep.endpoints(store).values() if e.model == name],
    }


def lifecycle(model: inv.ModelVersion, records: list[EvidenceRecord]) -> list[dict[str, Any]]:
    """One column per lifecycle stage, each with the records of that stage (oldest first)."""
    base = [
        {
            "id": model.record_id,
            "type": RecordType.MODEL_VERSION,
            "label": f"{model.name} v{model.version}",
            "created_at": model.created_at,
        }
    ]
    if model.base:
        base.insert(0, {"id": None, "type": "base", "label": model.base, "created_at": None})
    columns = [{"stage": "base", "nodes": base}]
    for stage, types in STAGES:
        nodes = [
            {"id": r.id, "type": r.type, "label": _label(r), "created_at": r.created_at}
            for r in records
            if r.type in types
        ]
        columns.append({"stage": stage, "nodes": nodes})
    return columns


def _gate(rec: EvidenceRecord) -> dict[str, Any]:
    return {
        "record_id": rec.id,
        "verdict": rec.body["verdict"],
        "created_at": rec.created_at,
        "base_run": rec.body["base"]["run_id"],
        "candidate_run": rec.body["candidate"]["run_id"],
    }


def _label(rec: EvidenceRecord) -> str:
    body = rec.body
    for key in ("verdict", "title", "status", "run_id", "name"):
        if isinstance(body.get(key), str):
            return f"{rec.type} #{rec.id}: {body[key]}"
    return f"{rec.type} #{rec.id}"


@router.get("/models/{name:path}", response_class=HTMLResponse, include_in_schema=False)
def model_page(request: Request, name: str) -> HTMLResponse:
    return page(request, "model.html.j2", model_detail(store_of(request), name))
