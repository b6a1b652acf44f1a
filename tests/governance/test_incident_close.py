"""Closing an incident never hides a missed Art. 73 deadline: an incident closed without a report after its
deadline passed fails PROD-04 and reads as overdue when closed, in the API and the CLI (real SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tunesafe.evidence.store import Store
from tunesafe.governance.controls import control_status
from tunesafe.production import incidents as inc
from tunesafe.production.inventory import ModelSpec, add_model

AWARE = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
LATER = datetime(2027, 1, 10, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        add_model(opened, ModelSpec(name="ft", ref="openai:ft@http://127.0.0.1:9/v1"))
        yield opened


def _prod04(store: Store) -> str:
    found = next(c for c in control_status(store, "ft", now=LATER).controls if c.control.id == "PROD-04")
    return str(found.status)


def _open(store: Store) -> inc.Incident:
    return inc.open_incident(store, model="ft", title="t", severity="high", source="manual",
                             kind="widespread", aware_at=AWARE, now=AWARE)  # due 12-03 09:30


def test_closing_after_the_deadline_without_a_report_fails_prod04(store: Store) -> None:
    incident = _open(store)
    closed = inc.close_incident(store, incident.id, resolution="fixed", now=AWARE + timedelta(days=3))
    assert _prod04(store) == "failing"
    assert closed.clock(LATER) == "stopped: closed without a report, OVERDUE by 1d 0h when closed"


def test_reporting_then_closing_passes_prod04(store: Store) -> None:
    incident = _open(store)
    day = AWARE + timedelta(days=1)
    inc.update_incident(store, incident.id, reported_at=day, now=day)
    inc.close_incident(store, incident.id, resolution="fixed", now=AWARE + timedelta(days=3))
    assert _prod04(store) == "satisfied"


def test_closing_before_the_deadline_without_a_report_says_so(store: Store) -> None:
    incident = _open(store)
    closed = inc.close_incident(store, incident.id, resolution="not a serious incident",
                                now=AWARE + timedelta(hours=5))
    assert closed.clock(LATER) == "stopped: closed without a report (1d 19h before the deadline)"
