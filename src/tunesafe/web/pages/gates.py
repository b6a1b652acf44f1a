"""Gate pages: the gate report as a page (the same view model and SVG charts as report.html), and the
drill-down from a family x category cell to its paired attempts, optionally only the discordant pairs
(attack success on one side only: the pairs McNemar's test counts).

Pair outcomes are read with `tunesafe.analysis.outcome.outcome` under the decision's judge from the stored
verdicts. When the decision escalated verdicts to a stronger judge, those are in the escalation record and
the page says so."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from tunesafe.analysis.outcome import is_attack_success, outcome
from tunesafe.engine import results as run_store
from tunesafe.evidence.schema import AttemptResultRow, RecordRow
from tunesafe.evidence.store import Store
from tunesafe.reports.html import report_context, title
from tunesafe.types import AttemptResult, EvidenceRecord, RecordType
from tunesafe.web.deps import not_found, record_or_404, store_of
from tunesafe.web.pages.runs import attempt_detail
from tunesafe.web.paging import MAX_PER_PAGE, PER_PAGE, clamp, window
from tunesafe.web.templating import page

router = APIRouter()
_T = AttemptResultRow


def gates_page(store: Store, *, page_no: int = 1, per_page: int = PER_PAGE) -> dict[str, Any]:
    """One page of the gate decisions, newest first: only the page's records are read."""
    gate = RecordRow.type == RecordType.GATE_DECISION
    total = run_store.read(store, select(func.count()).select_from(RecordRow).where(gate))[0][0]
    pages, page_no = clamp(total, page_no, per_page)
    newest = select(RecordRow.id).where(gate).order_by(RecordRow.id.desc())
    ids = run_store.read(store, newest.limit(per_page).offset(window(page_no, per_page).start))
    return {
        "gates": [_gate_row(store.get(record_id)) for (record_id,) in ids],
        "total": total,
        "page": page_no,
        "pages": pages,
        "per_page": per_page,
    }


def _gate_row(r: EvidenceRecord) -> dict[str, Any]:
    return {
        "record_id": r.id,
        "created_at": r.created_at,
        "verdict": r.body["verdict"],
        "title": title(r.body),
        "candidate_model": r.body.get("candidate_model"),
        "base_run": r.body["base"]["run_id"],
        "candidate_run": r.body["candidate"]["run_id"],
        "judge": r.body["judge"],
    }


def gate_record(store: Store, record_id: int) -> EvidenceRecord:
    rec = record_or_404(store, record_id, f"gate decision #{record_id}")
    if rec.type != RecordType.GATE_DECISION:
        not_found(f"gate decision #{record_id} (record #{record_id} is a {rec.type})")
    return rec


def cell_grid(body: Mapping[str, Any]) -> dict[str, Any]:
    """The heat map's cells as a table of links: families (rows) x categories (columns)."""
    cells = body["comparison"]["info"].get("asr_cells", [])
    families = sorted({c["family"] for c in cells})
    categories = sorted({c["category"] for c in cells})
    by_key = {(c["family"], c["category"]): c for c in cells}
    return {
        "families": families,
        "categories": categories,
        "rows": [[by_key.get((f, c)) for c in categories] for f in families],
    }


def gate_view(store: Store, record_id: int) -> dict[str, Any]:
    return _view(gate_record(store, record_id))


def _view(rec: EvidenceRecord) -> dict[str, Any]:
    return {
        "record": {"id": rec.id, "hash": rec.hash, "created_at": rec.created_at, "actor": rec.actor},
        "decision": rec.body,
        "title": title(rec.body),
        "cells": cell_grid(rec.body),
    }


def cell_pairs(
    store: Store,
    record_id: int,
    *,
    family: str,
    category: str,
    discordant: bool = False,
    page_no: int = 1,
    per_page: int = PER_PAGE,
) -> dict[str, Any]:
    """The paired harmful attempts of one family x category cell of a gate, in attempt-id order: the pairs
    its ASR cell counts (`n_pairs`, the grid's n), and those with an error on either side, which leave the
    pairs (`n_errored`)."""
    body = gate_record(store, record_id).body
    judge = body["judge"]
    sides = {
        side: _cell_results(store, body[side]["run_id"], family, category) for side in ("base", "candidate")
    }
    pairs = []
    for attempt_id in sorted(sides["base"].keys() & sides["candidate"].keys()):
        base, cand = sides["base"][attempt_id], sides["candidate"][attempt_id]
        before, after = is_attack_success(base, judge), is_attack_success(cand, judge)
        pairs.append(
            {
                "attempt_id": attempt_id,
                "attack": base.attempt.attack,
                "kind": base.attempt.kind,
                "before": outcome(base, judge),
                "after": outcome(cand, judge),
                "discordant": before is not None and after is not None and before != after,
                "request": _request(base),
                "base_response": base.response,
                "candidate_response": cand.response,
            }
        )
    n_all, n_errored = len(pairs), sum("error" in (p["before"], p["after"]) for p in pairs)
    if discordant:
        pairs = [p for p in pairs if p["discordant"]]
    pages, page_no = clamp(len(pairs), page_no, per_page)
    return {
        "record_id": record_id,
        "title": title(body),
        "judge": judge,
        "family": family,
        "category": category,
        "discordant": discordant,
        "n_pairs": n_all - n_errored,
        "n_errored": n_errored,
        "total": len(pairs),
        "page": page_no,
        "pages": pages,
        "per_page": per_page,
        "escalated": bool(body.get("escalation")),
        "pairs": pairs[window(page_no, per_page)],
    }


def pair_detail(store: Store, record_id: int, attempt_id: str) -> dict[str, Any]:
    """One attempt of a gate on both models: the request, both answers and every verdict of each."""
    body = gate_record(store, record_id).body
    judge = body["judge"]
    sides = {
        side: attempt_detail(store, body[side]["run_id"], attempt_id, judge) for side in ("base", "candidate")
    }
    return {
        "record_id": record_id,
        "title": title(body),
        "judge": judge,
        "attempt_id": attempt_id,
        "escalated": bool(body.get("escalation")),
        **sides,
    }


def _cell_results(store: Store, run_id: str, family: str, category: str) -> dict[str, AttemptResult]:
    # the heat map's cells are ASR cells: harmful attempts only (benign and borderline ones measure
    # over-refusal)
    query = select(_T.attempt, _T.generation, _T.verdicts).where(
        _T.run_id == run_id, _T.family == family, _T.category == category, _T.kind == "harmful"
    )
    found = (run_store.result_from_row(run_id, a, g, v) for a, g, v in run_store.read(store, query))
    return {r.attempt.id: r for r in found}


def _request(result: AttemptResult) -> str:
    users = [m.content for m in result.attempt.messages if m.role == "user"]
    return users[-1] if users else ""


@router.get("/gates", response_class=HTMLResponse, include_in_schema=False)
def gates_view(
    request: Request,
    page_no: int = Query(1, alias="page", ge=1),
    per_page: int = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE),
) -> HTMLResponse:
    return page(request, "gates.html.j2", gates_page(store_of(request), page_no=page_no, per_page=per_page))


@router.get("/gates/{record_id}", response_class=HTMLResponse, include_in_schema=False)
def gate_page(request: Request, record_id: int) -> HTMLResponse:
    rec = gate_record(store_of(request), record_id)
    return page(request, "gate.html.j2", {**_view(rec), "report": report_context(rec.body, rec)})


@router.get("/gates/{record_id}/cells", response_class=HTMLResponse, include_in_schema=False)
def cell_page(
    request: Request,
    record_id: int,
    family: str = Query(...),
    category: str = Query(...),
    discordant: bool = Query(False),
    page_no: int = Query(1, alias="page", ge=1),
) -> HTMLResponse:
    data = cell_pairs(
        store_of(request), record_id, family=family, category=category, discordant=discordant, page_no=page_no
    )
    return page(request, "cell.html.j2", data)


@router.get("/gates/{record_id}/pairs/{attempt_id}", response_class=HTMLResponse, include_in_schema=False)
def pair_page(request: Request, record_id: int, attempt_id: str) -> HTMLResponse:
    return page(request, "pair.html.j2", pair_detail(store_of(request), record_id, attempt_id))
