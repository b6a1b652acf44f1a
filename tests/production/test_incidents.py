"""Incidents API on a real SQLite store file: Art. 73 clocks, the fold of updates, due lists, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.production import incidents as inc
from tunesafe.types import RecordType

AWARE = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


def _open(store: Store, **kwargs: object) -> inc.Incident:
    args: dict[str, object] = {"model": "support-bot", "title": "jailbreak answered", "severity": "high",
                               "source": "manual", "aware_at": AWARE, "now": NOW}
    args.update(kwargs)
    return inc.open_incident(store, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "days"), [("general", 15), ("death", 10), ("widespread", 2),
                                            ("critical_infrastructure", 2)])
def test_clock_per_kind_is_exact_calendar_days_from_awareness(store: Store, kind: str, days: int) -> None:
    incident = _open(store, kind=kind)
    assert incident.deadline.kind == kind
    assert incident.deadline.due_at == AWARE + timedelta(days=days)
    assert incident.deadline.due_at == datetime(2026, 12, 1 + days, 9, 30, tzinfo=timezone.utc)
    assert incident.as_dict()["deadline"]["due_at"] == f"2026-12-{1 + days:02d}T09:30:00Z"


def test_earliest_applicable_deadline_counts(store: Store) -> None:
    incident = _open(store, kind="death,critical_infrastructure")
    assert [d.kind for d in incident.deadlines] == ["critical_infrastructure", "death", "general"]
    assert incident.deadline.due_at == datetime(2026, 12, 3, 9, 30, tzinfo=timezone.utc)
    # every incident also carries the general 15-day bound
    assert _open(store, kind="death").deadlines[-1].days == 15


def test_aware_at_with_offset_is_converted_to_utc(store: Store) -> None:
    incident = _open(store, aware_at=datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=1))))
    assert incident.aware_at == AWARE


def test_overdue_flag_and_reported_stops_clock(store: Store) -> None:
    incident = _open(store, kind="widespread")
    assert not incident.overdue(AWARE + timedelta(days=2))  # due exactly now: not yet past
    assert incident.overdue(AWARE + timedelta(days=2, seconds=1))
    assert incident.time_left(NOW) == timedelta(days=2) - (NOW - AWARE)
    reported = inc.update_incident(store, incident.id, reported_at="2026-12-02T08:00:00Z", now=NOW)
    assert reported.status == "reported"
    assert reported.reported_at == datetime(2026, 12, 2, 8, tzinfo=timezone.utc)
    assert reported.clock_stopped
    assert not reported.overdue(AWARE + timedelta(days=30))
    assert reported.time_left(NOW) is None


def test_updates_fold_in_chain_order(store: Store, tmp_path: Path) -> None:
    run = store.append(RecordType.RUN, {"model_name": "support-bot"}, subject="support-bot")
    incident = _open(store, evidence=[run.id], details={"asr_delta": 0.12}, owner="alice")
    other = _open(store, model="other-bot")
    inc.update_incident(store, incident.id, status="investigating", owner="bob", note="looking", now=NOW)
    inc.update_incident(store, incident.id, severity="critical", kind=["death"], note="patient harmed",
                        links=[run.id, other.id], now=NOW)
    state = inc.get_incident(store, f"INC-{incident.id}")
    assert (state.status, state.owner, state.severity) == ("investigating", "bob", "critical")
    assert state.kinds == ("general", "death")
    assert state.deadline.due_at == NOW + timedelta(days=10)  # from when the death became known
    assert state.links == (run.id, other.id)  # a link given twice is kept once
    assert [n["text"] for n in state.notes] == ["looking", "patient harmed"]
    assert state.details == {"asr_delta": 0.12}
    assert len(state.updates) == 2
    assert inc.get_incident(store, other.id).status == "open"  # updates touch only their incident
    closed = inc.close_incident(store, incident.id, resolution="adapter rolled back", now=NOW)
    assert (closed.status, closed.resolution, closed.closed_at) == ("closed", "adapter rolled back", NOW)
    assert closed.clock_stopped
    # the original record is untouched: still "open" as opened
    assert store.get(incident.id).body["status"] == "open"
    assert [i.id for i in inc.list_incidents(store, status="open")] == [other.id]
    assert [i.id for i in inc.list_incidents(store, model="other-bot")] == [other.id]
    assert store.verify().ok


def test_incident_records_name_the_model_as_subject(store: Store) -> None:
    incident = _open(store)
    inc.update_incident(store, incident.id, note="n", now=NOW)
    assert [r.type for r in store.records(subject="support-bot")] == [RecordType.INCIDENT,
                                                                      RecordType.INCIDENT_UPDATE]


def test_due_lists_near_and_past_deadlines_most_urgent_first(store: Store) -> None:
    general = _open(store)  # due 12-16
    widespread = _open(store, kind="widespread")  # due 12-03
    reported = _open(store, kind="widespread")
    inc.update_incident(store, reported.id, status="reported", now=NOW)
    within = timedelta(days=3)
    assert [i.id for i in inc.due_incidents(store, within=within, now=NOW)] == [widespread.id]
    later = datetime(2026, 12, 14, tzinfo=timezone.utc)
    assert [i.id for i in inc.due_incidents(store, within=within, now=later)] == [widespread.id, general.id]
    assert inc.due_incidents(store, within=timedelta(0), now=NOW) == []


def test_conversations_keep_the_request_side_only(store: Store) -> None:
    conv = {"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "ask"},
                         {"role": "assistant", "content": "Step 1: [redacted]"}], "category": "cyber"}
    incident = _open(store, conversations=[conv])
    request = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "ask"}]
    assert incident.conversations == ({"messages": request, "category": "cyber"},)


@pytest.mark.parametrize(("kwargs", "where"), [
    ({"severity": "urgent"}, "--severity"),
    ({"kind": "fatal"}, "--kind"),
    ({"aware_at": datetime(2027, 1, 1, tzinfo=timezone.utc)}, "--aware-at"),
    ({"aware_at": "0001-01-01T00:00:00+01:00"}, "--aware-at"),  # before year 1 in UTC
    # stored, a deadline past year 9999 crashed every later `incidents list` and `due`
    ({"aware_at": None, "now": datetime(9999, 12, 30, tzinfo=timezone.utc)}, "--aware-at"),
    ({"title": "  "}, "--title"),
    ({"model": "bad name"}, "MODEL"),
    ({"source": "Red Team"}, "--source"),
    ({"evidence": [999]}, "--evidence/--link"),
    ({"conversations": [{"messages": [{"role": "assistant", "content": "x"}]}]}, "--conversation #1"),
])
def test_bad_input_records_nothing(store: Store, kwargs: dict[str, object], where: str) -> None:
    with pytest.raises(UserError) as caught:
        _open(store, **kwargs)
    assert caught.value.where == where
    assert list(store.records()) == []


def test_bad_updates_record_nothing(store: Store) -> None:
    incident = _open(store)
    before = len(list(store.records()))
    for call, where in [
        (lambda: inc.update_incident(store, 999, note="x", now=NOW), "ID"),
        (lambda: inc.update_incident(store, "abc", note="x", now=NOW), "ID"),
        (lambda: inc.update_incident(store, incident.id, status="closed", now=NOW), "--status"),
        (lambda: inc.update_incident(store, incident.id, status="done", now=NOW), "--status"),
        (lambda: inc.update_incident(store, incident.id, reported_at="yesterday", now=NOW), "--reported-at"),
        (lambda: inc.update_incident(store, incident.id, reported_at="2026-11-01T00:00:00Z", now=NOW),
         "--reported-at"),
        (lambda: inc.update_incident(store, incident.id, now=NOW), incident.label),
    ]:
        with pytest.raises(UserError) as caught:
            call()
        assert caught.value.where == where
    inc.close_incident(store, incident.id, resolution="fixed", now=NOW)
    with pytest.raises(UserError, match="closed"):
        inc.update_incident(store, incident.id, note="late", now=NOW)
    assert len(list(store.records())) == before + 1


def test_durations_too_long_for_a_date_are_one_error() -> None:
    from tunesafe.production.clocks import parse_duration

    assert parse_duration("1.5d", "--within") == timedelta(days=1.5)
    for text in ("99999999999d", "999999999999999999999h"):  # timedelta's limit, not a traceback
        with pytest.raises(UserError, match="--within"):
            parse_duration(text, "--within")
