"""Run pages: the list of runs, one run's attempts a page at a time (filtered and counted in SQL, so a
run of 100,000 attempts opens as fast as one of 100) with its stored metrics, and one attempt in full.

Metrics come from the run's evidence record (`summary`, written when the run completed): the page never
recomputes them. Each row's outcome is `tunesafe.analysis.outcome.outcome` of that row, the one
definition every metric uses."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Select, and_, func, select

from tunesafe.analysis.outcome import outcome
from tunesafe.engine import results as run_store
from tunesafe.errors import UserError
from tunesafe.evidence.schema import AttemptResultRow, RecordRow
from tunesafe.evidence.store import Store
from tunesafe.types import EvidenceRecord, RecordType
from tunesafe.web.deps import not_found, store_of
from tunesafe.web.templating import page

router = APIRouter()

PER_PAGE = 50
MAX_PER_PAGE = 500
FILTERS = ("family", "category", "kind")
_T = AttemptResultRow


def runs_list(store: Store, model: str | None = None) -> list[dict[str, Any]]:
    runs = [r for r in run_store.list_runs(store) if model is None or r.model_name == model]
    return [{**run_summary(r.as_dict())} for r in reversed(runs)]


def run_summary(info: dict[str, Any]) -> dict[str, Any]:
    config = info.pop("config")
    return {**info, "model_name": config.get("model_name"), "suite": (config.get("suite") or {}).get("name"),
            "judges": [j.get("name") for j in config.get("judges", [])]}


def run_record(store: Store, run_id: str) -> EvidenceRecord | None:
    """The RUN evidence record of a run (None until the run completes). Bodies are canonical JSON, so the
    run id appears in exactly this form; the match is confirmed on the parsed body."""
    needle = f'"run_id":{json.dumps(run_id, ensure_ascii=False)}'
    query = (select(RecordRow.id).where(RecordRow.type == RecordType.RUN, RecordRow.body.contains(needle))
             .order_by(RecordRow.id.desc()))
    for (record_id,) in run_store.read(store, query):
        rec = store.get(record_id)
        if rec.body.get("run_id") == run_id:
            return rec
    return None


def run_page(store: Store, run_id: str, *, page_no: int = 1, per_page: int = PER_PAGE,
             filters: dict[str, str | None] | None = None, errors_only: bool = False) -> dict[str, Any]:
    try:
        info = run_store.load_run(store, run_id)
    except UserError:
        not_found(f"run {run_id!r}")
    where = [_T.run_id == run_id]
    chosen = {k: v for k, v in (filters or {}).items() if k in FILTERS and v}
    where += [getattr(_T, k) == v for k, v in chosen.items()]
    if errors_only:
        where.append(_T.error.is_not(None))
    total = run_store.read(store, select(func.count()).select_from(_T).where(and_(*where)))[0][0]
    pages = max(1, -(-total // per_page))
    page_no = min(page_no, pages)
    columns = (_T.attempt_id, _T.behavior_id, _T.attack, _T.family, _T.category, _T.kind, _T.generation,
               _T.verdicts, _T.error, _T.latency_s)
    query: Select[Any] = (select(*columns).where(and_(*where)).order_by(_T.attempt_id)
                          .limit(per_page).offset((page_no - 1) * per_page))
    rows = [_row(run_id, r) for r in run_store.read(store, query)]
    record = run_record(store, run_id)
    summary = record.body.get("summary") if record else None
    return {
        "run": run_summary(info.as_dict()), "record_id": record.id if record else None,
        "metrics": _metrics(summary), "total": total, "page": page_no, "pages": pages, "per_page": per_page,
        "filters": chosen, "errors_only": errors_only, "rows": rows,
        "choices": {k: _distinct(store, run_id, k) for k in FILTERS},
    }


def attempt_detail(store: Store, run_id: str, attempt_id: str) -> dict[str, Any]:
    """One attempt as stored: every message sent, the conversation, the answer, the generation and every
    judge's verdict, plus its outcome."""
    columns = (_T.attempt, _T.generation, _T.verdicts, _T.error, _T.family, _T.category, _T.kind, _T.attack)
    rows = run_store.read(store, select(*columns).where(_T.run_id == run_id, _T.attempt_id == attempt_id))
    if not rows:
        not_found(f"attempt {attempt_id!r} in run {run_id!r}")
    attempt, generation, verdicts, error, family, category, kind, attack = rows[0]
    result = run_store.result_from_row(run_id, attempt, generation, verdicts)
    return {
        "run_id": run_id, "attempt_id": attempt_id, "attack": attack, "family": family, "category": category,
        "kind": kind, "behavior_id": attempt.get("behavior_id"), "messages": attempt.get("messages", []),
        "prefill": attempt.get("prefill"), "conversation": attempt.get("conversation", []),
        "response": attempt.get("response", ""), "generation": generation, "verdicts": verdicts,
        "error": error, "outcome": outcome(result),
    }


def _row(run_id: str, row: Any) -> dict[str, Any]:
    attempt_id, behavior_id, attack, family, category, kind, generation, verdicts, error, latency = row
    # outcome() needs only the generation's error/blocked and the verdicts; messages are not loaded here
    fake = {"id": attempt_id, "behavior_id": behavior_id, "attack": attack, "attack_version": "",
            "family": family, "category": category, "kind": kind, "messages": []}
    result = run_store.result_from_row(run_id, fake, generation, verdicts)
    return {"attempt_id": attempt_id, "behavior_id": behavior_id, "attack": attack, "family": family,
            "category": category, "kind": kind, "outcome": outcome(result), "error": error,
            "latency_s": latency}


def _distinct(store: Store, run_id: str, column: str) -> list[str]:
    col = getattr(_T, column)
    return [v for (v,) in run_store.read(store, select(col).distinct().where(_T.run_id == run_id).order_by(col))]


def _metrics(summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The stored summary's groups as rows: group, n, and each rate with its interval."""
    if not summary:
        return []
    rows = []
    for group, metrics in summary.get("groups", {}).items():
        rows.append({"group": group, "n": metrics["n"], "outcomes": metrics.get("outcomes", {}),
                     **{m: metrics.get(m) for m in ("asr", "refusal", "over_refusal", "error", "blocked")}})
    return rows


@router.get("/runs", response_class=HTMLResponse, include_in_schema=False)
def runs_page(request: Request, model: str | None = Query(None)) -> HTMLResponse:
    return page(request, "runs.html.j2", {"runs": runs_list(store_of(request), model or None), "model": model})


@router.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
def run_view(request: Request, run_id: str, page_no: int = Query(1, alias="page", ge=1),
             per_page: int = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE), family: str | None = Query(None),
             category: str | None = Query(None), kind: str | None = Query(None),
             errors: bool = Query(False)) -> HTMLResponse:
    data = run_page(store_of(request), run_id, page_no=page_no, per_page=per_page,
                    filters={"family": family, "category": category, "kind": kind}, errors_only=errors)
    return page(request, "run.html.j2", data)


@router.get("/runs/{run_id}/attempts/{attempt_id}", response_class=HTMLResponse, include_in_schema=False)
def attempt_view(request: Request, run_id: str, attempt_id: str) -> HTMLResponse:
    return page(request, "attempt.html.j2", {"a": attempt_detail(store_of(request), run_id, attempt_id)})
