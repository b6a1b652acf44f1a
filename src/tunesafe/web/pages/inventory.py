"""Inventory page: every model with its stage, base, last gate and the flags a reviewer acts on
(fine-tuned without a post-fine-tuning evaluation, no verified guardrail, open incidents)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from tunesafe.evidence.store import Store
from tunesafe.production import endpoints as ep
from tunesafe.production import incidents as inc
from tunesafe.production import inventory as inv
from tunesafe.types import RecordType
from tunesafe.web.deps import store_of
from tunesafe.web.templating import page

router = APIRouter()

FLAGS = ("no_post_eval", "no_verified_guardrail", "open_incidents")
SORTS = ("name", "stage", "base", "last_gate", "open_incidents")


def inventory_rows(
    store: Store,
    *,
    stage: str | None = None,
    flag: str | None = None,
    q: str | None = None,
    sort: str = "name",
    desc: bool = False,
) -> list[dict[str, Any]]:
    if flag is not None and flag not in FLAGS:
        raise HTTPException(422, f"unknown flag {flag!r}: use one of {', '.join(FLAGS)}")
    if sort not in SORTS:
        raise HTTPException(422, f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
    evals = inv.evaluations(store)
    gates = last_gates(store)
    served = ep.endpoints(store).values()
    open_by_model = Counter(i.model for i in inc.incidents(store).values() if i.status != "closed")
    rows = []
    for model in inv.list_models(store, stage):
        endpoints = [e for e in served if e.model == model.name]
        gate = gates.get(model.name)
        rows.append(
            {
                "name": model.name,
                "stage": model.stage,
                "base": model.base,
                "owner": model.owner,
                "version": model.version,
                "fine_tuned": model.fine_tuned,
                "record_id": model.record_id,
                "last_gate": gate,
                "no_post_eval": model.fine_tuned and inv.latest_evaluation(model, evals) is None,
                "endpoints": [e.name for e in endpoints],
                "no_verified_guardrail": not any(e.verification for e in endpoints),
                "open_incidents": open_by_model.get(model.name, 0),
            }
        )
    if flag is not None:
        rows = [r for r in rows if r[flag]]
    if q:
        needle = q.lower()
        rows = [
            r
            for r in rows
            if needle in str(r["name"]).lower()
            or needle in str(r["base"] or "").lower()
            or needle in str(r["owner"] or "").lower()
        ]
    rows.sort(key=lambda r: _sort_key(r, sort), reverse=desc)
    return rows


def last_gates(store: Store) -> dict[str, dict[str, Any]]:
    """The newest gate decision about each model (by the candidate name it was recorded under)."""
    found: dict[str, dict[str, Any]] = {}
    for rec in store.records(type=RecordType.GATE_DECISION):
        name = rec.body.get("candidate_model")
        if name:
            found[str(name)] = {
                "record_id": rec.id,
                "verdict": rec.body["verdict"],
                "created_at": rec.created_at,
            }
    return found


def _sort_key(row: dict[str, Any], sort: str) -> tuple[Any, ...]:
    if sort == "last_gate":
        gate = row["last_gate"]
        return (gate["verdict"] if gate else "", row["name"])
    value = row[sort]
    return (value if value is not None else "", row["name"])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def inventory_page(
    request: Request,
    stage: str | None = Query(None),
    flag: str | None = Query(None),
    q: str | None = Query(None),
    sort: str = Query("name"),
    desc: bool = Query(False),
) -> HTMLResponse:
    rows = inventory_rows(
        store_of(request), stage=stage or None, flag=flag or None, q=q, sort=sort, desc=desc
    )
    return page(
        request,
        "inventory.html.j2",
        {
            "rows": rows,
            "stages": inv.STAGES,
            "flags": FLAGS,
            "stage": stage,
            "flag": flag,
            "q": q or "",
            "sort": sort,
            "desc": desc,
            "sorts": SORTS,
        },
    )
