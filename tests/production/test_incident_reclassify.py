"""Reclassifying an incident on a real SQLite store: a kind learnt later (a death) runs its Art. 73 clock
from the time the new facts became known, never past the deadline already running; a downgrade never
extends a deadline that has already passed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.production import incidents as inc

AWARE = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)


def _utc(day: int, hour: int = 9, minute: int = 30) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


def _open(store: Store, kind: str = "general") -> inc.Incident:
    return inc.open_incident(store, model="support-bot", title="harmful advice", severity="high",
                             source="manual", aware_at=AWARE, kind=kind, now=AWARE)


def test_a_death_learnt_later_counts_ten_days_from_when_it_became_known(store: Store) -> None:
    incident = _open(store)
    known = _utc(3)
    upgraded = inc.update_incident(store, incident.id, kind="death", note="a patient died", now=known)
    death = next(d for d in upgraded.deadlines if d.kind == "death")
    assert death.due_at == known + timedelta(days=10)  # not AWARE + 10 days
    assert upgraded.deadline.kind == "death" and upgraded.deadline.due_at == _utc(13)
    assert not upgraded.overdue(known)


def test_a_death_learnt_late_never_moves_the_running_deadline_later(store: Store) -> None:
    incident = _open(store)  # general: due 12-16 09:30
    known = _utc(12)
    upgraded = inc.update_incident(store, incident.id, kind="death", now=known)
    assert upgraded.deadline.due_at == _utc(16)  # the general bound still counts
    assert upgraded.deadline.due_at <= incident.deadline.due_at
    # a death learnt on day 12 is not overdue the moment it is learnt
    assert not upgraded.overdue(known)


def test_the_time_the_new_facts_became_known_can_be_given(store: Store) -> None:
    incident = _open(store)
    upgraded = inc.update_incident(store, incident.id, kind="death", aware_at="2026-12-02T10:30:00+01:00",
                                   now=_utc(4))
    assert next(d for d in upgraded.deadlines if d.kind == "death").due_at == _utc(12)
    before = len(list(store.records()))
    for when in ("2026-11-30T00:00:00Z", "2026-12-09T00:00:00Z"):  # before awareness, in the future
        with pytest.raises(UserError) as caught:
            inc.update_incident(store, incident.id, kind="widespread", aware_at=when, now=_utc(4))
        assert caught.value.where == "--aware-at"
    with pytest.raises(UserError, match="--kind"):
        inc.update_incident(store, incident.id, aware_at="2026-12-02T00:00:00Z", now=_utc(4))
    assert len(list(store.records())) == before


def test_kinds_kept_across_an_update_keep_their_clock(store: Store) -> None:
    incident = _open(store, kind="death")
    updated = inc.update_incident(store, incident.id, kind="death,widespread", now=_utc(2))
    assert {d.kind: d.due_at for d in updated.deadlines} == {
        "widespread": _utc(4), "death": _utc(11), "general": _utc(16)}


def test_a_downgrade_cannot_extend_a_deadline_already_passed(store: Store) -> None:
    incident = _open(store, kind="critical_infrastructure")  # due 12-03 09:30
    late = _utc(4)
    assert incident.overdue(late)
    before = len(list(store.records()))
    with pytest.raises(UserError, match="passed") as caught:
        inc.update_incident(store, incident.id, kind="general", now=late)
    assert caught.value.where == "--kind"
    assert len(list(store.records())) == before
    assert inc.get_incident(store, incident.id).overdue(late)


def test_a_downgrade_before_the_deadline_is_allowed_and_kept_in_the_history(store: Store) -> None:
    incident = _open(store, kind="critical_infrastructure")
    downgraded = inc.update_incident(store, incident.id, kind="general", note="no disruption after all",
                                     now=_utc(2))
    assert downgraded.kinds == ("general",) and downgraded.deadline.due_at == _utc(16)
    assert len(downgraded.updates) == 1 and store.verify().ok


def test_reclassifying_through_the_cli(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from tunesafe.cli.app import app

    db = f"sqlite:///{tmp_path / 'cli.db'}"

    def cli(*args: str) -> tuple[int, str]:
        done = CliRunner().invoke(app, ["--db", db, "incidents", *args])
        if isinstance(done.exception, UserError):  # the real entry point prints it and exits 2
            return done.exception.exit_code, str(done.exception)
        return done.exit_code, done.stdout if "--json" in args else done.output

    code, out = cli("open", "support-bot", "--title", "t", "--severity", "high", "--kind",
                    "critical_infrastructure", "--aware-at", "2026-12-01T09:30:00Z", "--now",
                    "2026-12-01T10:00:00Z", "--json")
    assert code == 0, out
    ident = str(json.loads(out)["id"])
    code, out = cli("update", ident, "--kind", "general", "--now", "2026-12-04T00:00:00Z")
    assert code == 2 and "already passed" in out
    code, out = cli("update", ident, "--kind", "critical_infrastructure,death", "--aware-at",
                    "2026-12-02T09:30:00Z", "--now", "2026-12-04T00:00:00Z")
    assert code == 0, out
    assert "deadline death: 2026-12-12T09:30:00Z (10 days from 2026-12-02T09:30:00Z" in out
    assert "deadline critical_infrastructure: 2026-12-03T09:30:00Z (2 days from 2026-12-01T09:30:00Z" in out
    report = tmp_path / "r.md"
    code, out = cli("report", ident, "--out", str(report), "--now", "2026-12-04T00:00:00Z")
    assert code == 0, out
    assert "- death: 10 days from 2026-12-02T09:30:00Z, due 2026-12-12T09:30:00Z" in report.read_text()


@pytest.mark.parametrize("naive", ["2026-12-01T09:30:00", "2026-12-01", datetime(2026, 12, 1, 9, 30)])
def test_a_clock_time_without_an_offset_is_refused_not_read_as_utc(
    store: Store, naive: str | datetime
) -> None:
    # Art. 73 clocks run from awareness: a local time read as UTC puts the deadline 1-2 hours late in the
    # EU (CET/CEST), the unsafe side, so a time that does not say its offset is refused
    before = list(store.records())
    with pytest.raises(UserError, match="offset") as caught:
        inc.open_incident(store, model="support-bot", title="t", severity="high", source="manual",
                          aware_at=naive, kind="general", now=_utc(4))
    assert caught.value.where == "--aware-at" and "+01:00" in (caught.value.fix or "")
    incident = _open(store)
    with pytest.raises(UserError, match="offset") as caught:
        inc.update_incident(store, incident.id, reported_at=naive, now=_utc(4))
    assert caught.value.where == "--reported-at"
    assert len(list(store.records())) == len(before) + 1  # only the valid open was stored
