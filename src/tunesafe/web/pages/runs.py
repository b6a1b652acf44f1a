"""Run pages: the list of runs, one run's attempts a page at a time (filtered and counted in SQL, so a
run of 100,000 attempts opens as fast as one of 100) with its stored metrics, and one attempt in full.

Metrics come from the run's evidence record (`summary`, written when the run completed): the page never
recomputes them. Each row's outcome is `tunesafe.analysis.outcome.outcome` of that row, the one
definition every metric uses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from tunesafe.analysis.outcome import outcome
from tunesafe.engine import results as run_store
from tunesafe.evidence.schema import AttemptResultRow, RunRow
from tunesafe.evidence.store import Store
from tunesafe.web.deps import not_found, store_of
from tunesafe.web.paging import MAX_PER_PAGE, PER_PAGE, clamp, window
from tunesafe.web.run_index import FILTERS, RunState, RunStates
from tunesafe.web.templating import page

router = APIRouter()

AXES = ("overall", "family", "category", "kind")
RATES = ("asr", "refusal", "over_refusal", "error", "degenerate", "blocked")  # the columns of `runs show`
_T = AttemptResultRow


def runs_page(
    store: Store, model: str | None = None, *, page_no: int = 1, per_page: int = PER_PAGE
) -> dict[str, Any]:
    """One page of the runs (of `model`), newest first: only the page's runs are loaded and counted."""
    ids = run_store.run_ids(store, model)
    pages, page_no = clamp(len(ids), page_no, per_page)
    return {
        "runs": _summaries(store, ids[window(page_no, per_page)]),
        "total": len(ids),
        "page": page_no,
        "pages": pages,
        "per_page": per_page,
        "model": model,
    }


def _summaries(store: Store, ids: list[str]) -> list[dict[str, Any]]:
    return [run_summary(r.as_dict()) for r in run_store.load_runs(store, ids)]


def run_summary(info: dict[str, Any]) -> dict[str, Any]:
    config = info.pop("config")
    return {
        **info,
        "model_name": config.get("model_name"),
        "suite": (config.get("suite") or {}).get("name"),
        "judges": [j.get("name") for j in config.get("judges", [])],
    }


def run_page(
    store: Store,
    states: RunStates,
    run_id: str,
    *,
    page_no: int = 1,
    per_page: int = PER_PAGE,
    filters: dict[str, str | None] | None = None,
    errors_only: bool = False,
) -> dict[str, Any]:
    runs = run_store.read(store, select(RunRow.__table__).where(RunRow.id == run_id))
    if not runs:
        not_found(f"run {run_id!r}")
    state = states.get(store, run_id)
    summary = state.record.body.get("summary") if state.record else None
    chosen = {k: v for k, v in (filters or {}).items() if k in FILTERS and v}
    columns = (
        _T.attempt_id,
        _T.behavior_id,
        _T.attack,
        _T.family,
        _T.category,
        _T.kind,
        _T.generation,
        _T.verdicts,
        _T.error,
        _T.latency_s,
    )
    if chosen or errors_only:
        matching = state.index().select(chosen, errors_only)
        total = len(matching)
        pages, page_no = clamp(total, page_no, per_page)
        wanted = [state.index().ids[i] for i in matching[window(page_no, per_page)]]
        query = select(*columns).where(_T.run_id == run_id, _T.attempt_id.in_(wanted))
    else:  # walks the (run_id, attempt_id) index: reads only the page's rows
        total = state.n_rows
        pages, page_no = clamp(total, page_no, per_page)
        query = select(*columns).where(_T.run_id == run_id).limit(per_page).offset((page_no - 1) * per_page)
    rows = [_row(run_id, r) for r in run_store.read(store, query.order_by(_T.attempt_id))] if total else []
    return {
        "run": run_summary(_info(runs[0], state, summary)),
        "record_id": state.record.id if state.record else None,
        "metrics": _metrics(summary),
        "total": total,
        "page": page_no,
        "pages": pages,
        "per_page": per_page,
        "filters": chosen,
        "errors_only": errors_only,
        "rows": rows,
        "choices": _choices(state, summary),
    }


def _info(row: Any, state: RunState, summary: dict[str, Any] | None) -> dict[str, Any]:
    """The run as `RunInfo.as_dict` has it; the error count from the stored summary when the run is
    complete (counting errors in SQL reads every row)."""
    if summary is not None:
        errors = int(summary["groups"]["overall"]["outcomes"].get("error", 0))
    else:
        errors = len(state.index().errored)
    return {
        "id": row.id,
        "model_ref": row.model_ref,
        "model_hash": row.model_hash,
        "config": row.config,
        "config_hash": row.config_hash,
        "status": row.status,
        "n_planned": row.n_planned,
        "n_done": state.n_rows,
        "n_errors": errors,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


def _choices(state: RunState, summary: dict[str, Any] | None) -> dict[str, list[str]]:
    """Filter values: the summary's groups of a complete run, else the values in the index."""
    if summary is not None:
        groups = summary.get("groups", {})
        return {k: sorted(g.split(":", 1)[1] for g in groups if g.startswith(f"{k}:")) for k in FILTERS}
    return {k: state.index().choices(k) for k in FILTERS}


def attempt_detail(store: Store, run_id: str, attempt_id: str, judge: str | None = None) -> dict[str, Any]:
    """One attempt as stored: every message sent, the conversation, the answer, the generation and every
    judge's verdict, plus its outcome under `judge` (default: the run's primary judge)."""
    columns = (_T.attempt, _T.generation, _T.verdicts, _T.error, _T.family, _T.category, _T.kind, _T.attack)
    rows = run_store.read(store, select(*columns).where(_T.run_id == run_id, _T.attempt_id == attempt_id))
    if not rows:
        not_found(f"attempt {attempt_id!r} in run {run_id!r}")
    attempt, generation, verdicts, error, family, category, kind, attack = rows[0]
    result = run_store.result_from_row(run_id, attempt, generation, verdicts)
    return {
        "run_id": run_id,
        "attempt_id": attempt_id,
        "attack": attack,
        "family": family,
        "category": category,
        "kind": kind,
        "behavior_id": attempt.get("behavior_id"),
        "messages": attempt.get("messages", []),
        "prefill": attempt.get("prefill"),
        "conversation": attempt.get("conversation", []),
        "response": attempt.get("response", ""),
        "generation": generation,
        "verdicts": verdicts,
        "error": error,
        "outcome": outcome(result, judge),
    }


def _row(run_id: str, row: Any) -> dict[str, Any]:
    attempt_id, behavior_id, attack, family, category, kind, generation, verdicts, error, latency = row
    # outcome() needs only the generation's error/blocked and the verdicts; messages are not loaded here
    fake = {
        "id": attempt_id,
        "behavior_id": behavior_id,
        "attack": attack,
        "attack_version": "",
        "family": family,
        "category": category,
        "kind": kind,
        "messages": [],
    }
    result = run_store.result_from_row(run_id, fake, generation, verdicts)
    return {
        "attempt_id": attempt_id,
        "behavior_id": behavior_id,
        "attack": attack,
        "family": family,
        "category": category,
        "kind": kind,
        "outcome": outcome(result),
        "error": error,
        "latency_s": latency,
    }


def _metrics(summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The stored summary's groups as rows (overall, then by family, category, kind): group, n, and each
    rate with its interval. The record's canonical JSON sorted the groups by name."""
    if not summary:
        return []
    rows = []
    groups = summary.get("groups", {})
    for group in sorted(
        groups, key=lambda g: (AXES.index(g.split(":", 1)[0]) if g.split(":", 1)[0] in AXES else len(AXES), g)
    ):
        metrics = groups[group]
        rows.append(
            {
                "group": group,
                "n": metrics["n"],
                "outcomes": metrics.get("outcomes", {}),
                **{m: metrics.get(m) for m in RATES},
            }
        )
    return rows


@router.get("/runs", response_class=HTMLResponse, include_in_schema=False)
def runs_view(
    request: Request,
    model: str | None = Query(None),
    page_no: int = Query(1, alias="page", ge=1),
    per_page: int = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE),
) -> HTMLResponse:
    data = runs_page(store_of(request), model or None, page_no=page_no, per_page=per_page)
    return page(request, "runs.html.j2", data)


@router.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
def run_view(
    request: Request,
    run_id: str,
    page_no: int = Query(1, alias="page", ge=1),
    per_page: int = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE),
    family: str | None = Query(None),
    category: str | None = Query(None),
    kind: str | None = Query(None),
    errors: bool = Query(False),
) -> HTMLResponse:
    data = run_page(
        store_of(request),
        request.app.state.run_states,
        run_id,
        page_no=page_no,
        per_page=per_page,
        filters={"family": family, "category": category, "kind": kind},
        errors_only=errors,
    )
    return page(request, "run.html.j2", data)


@router.get("/runs/{run_id}/attempts/{attempt_id}", response_class=HTMLResponse, include_in_schema=False)
def attempt_view(request: Request, run_id: str, attempt_id: str) -> HTMLResponse:
    return page(request, "attempt.html.j2", {"a": attempt_detail(store_of(request), run_id, attempt_id)})
