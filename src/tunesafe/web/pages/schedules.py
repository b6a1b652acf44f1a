"""Schedules page: every active red-team schedule, its current period and who claimed it, the next start,
and its recorded runs with their verdicts."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tunesafe.evidence.store import Store
from tunesafe.production import claims
from tunesafe.production import schedules as sch
from tunesafe.types import RecordType
from tunesafe.web.deps import store_of
from tunesafe.web.templating import page

router = APIRouter()
RECENT_RUNS = 5


def schedules_list(store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(timezone.utc)
    states = claims.claim_states(store)
    runs: dict[str, list[dict[str, Any]]] = {}
    for rec in store.records(type=RecordType.REDTEAM_RUN):
        runs.setdefault(str(rec.body.get("schedule_id")), []).append(
            {
                "record_id": rec.id,
                "period": rec.body.get("period"),
                "run_id": rec.body.get("run_id"),
                "verdict": rec.body.get("verdict"),
                "created_at": rec.created_at,
            }
        )
    out = []
    for schedule in sorted(sch.schedules(store).values(), key=lambda s: (s.model, s.id)):
        period = sch.current_period(schedule, now)
        state = states.get((schedule.id, period.key)) if period else None
        out.append(
            {
                **schedule.as_dict(),
                "current_period": period.key if period else None,
                "period_state": sch.period_state(period, state.state if state else None),
                "claimed_by": state.owner if state else None,
                "next_start": sch.iso(sch.next_start(schedule, now)),
                "runs": list(reversed(runs.get(schedule.id, [])))[:RECENT_RUNS],
            }
        )
    return out


@router.get("/schedules", response_class=HTMLResponse, include_in_schema=False)
def schedules_page(request: Request) -> HTMLResponse:
    return page(request, "schedules.html.j2", {"schedules": schedules_list(store_of(request))})
