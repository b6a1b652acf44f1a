"""A runner frozen between finishing its run and recording it (a host asleep, a paused VM) outlives its
lease; another runner takes the period over and records it. The late runner's record is refused under the
chain lock: one REDTEAM_RUN per (schedule, period)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tunesafe.engine.results import list_runs
from tunesafe.evidence.store import Store
from tunesafe.production import claims
from tunesafe.production.inventory import ModelSpec, add_model
from tunesafe.production.redteam import RunDueResult, run_due
from tunesafe.production.schedules import Schedule, add_schedule, parse_instant
from tunesafe.testing.openai_server import serve
from tunesafe.types import EvidenceRecord, RecordType

NOW = parse_instant("2026-01-05T00:00:00Z", "test")
WAIT_S = 120  # an upper bound on each step, never a timing the test relies on


class FreezesBeforeRecording(Store):
    """The real store, but the runner using it stops just before it appends its REDTEAM_RUN record until
    the test lets it go on: the moment a frozen host would wake up."""

    frozen: threading.Event
    thaw: threading.Event
    at: str  # the record type it freezes before

    def append(self, type: str, body: Mapping[str, Any], actor: str | None = None,
               subject: str | None = None, check: Any = None) -> EvidenceRecord:
        if type == self.at and not self.thaw.is_set():
            self.frozen.set()
            assert self.thaw.wait(WAIT_S)
        return super().append(type, body, actor=actor, subject=subject, check=check)


@contextmanager
def frozen_runner(db: str, lease: timedelta, now: datetime = NOW,
                  at: str = RecordType.REDTEAM_RUN) -> Iterator[list[RunDueResult]]:
    """`run_due` in a thread, held just before its `at` record until the block ends; its result after."""
    result: list[RunDueResult] = []
    with FreezesBeforeRecording.open(db) as store:
        store.frozen, store.thaw, store.at = threading.Event(), threading.Event(), at
        runner = threading.Thread(target=lambda: result.append(run_due(store, now=now, lease=lease,
                                                                       owner="late")))
        runner.start()
        try:
            assert store.frozen.wait(WAIT_S)
            yield result
        finally:
            store.thaw.set()
            runner.join(WAIT_S)


@pytest.fixture
def scheduled(tmp_path: Path) -> Iterator[tuple[str, Schedule]]:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with serve() as server, Store.open(db) as store:
        add_model(store, ModelSpec(name="support-bot", ref=f"openai:tunesafe-test@{server.url}"))
        schedule = add_schedule(store, "support-bot", every="30d", suite="smoke", attacks="direct_request",
                                judges=("refusal",), limit=4, start=parse_instant("2026-01-01", "test"))
        yield db, schedule


def test_a_runner_whose_lease_was_taken_over_does_not_record_the_period_again(
        scheduled: tuple[str, Schedule]) -> None:
    db, schedule = scheduled
    with frozen_runner(db, lease=timedelta(seconds=1)) as late, Store.open(db) as store:
        _wait_for_lapse(store, schedule.id)
        taken_over = run_due(store, now=NOW, lease=timedelta(minutes=5), owner="second")

    assert [r.status for r in taken_over.ran] == ["recorded"], taken_over.ran
    [lost] = late[0].ran
    assert lost.status == "taken_over" and "result is not recorded" in (lost.error or ""), lost
    assert late[0].exit_code == 0  # the period is recorded: nothing for this runner's cron job to retry
    with Store.open(db) as store:
        records = _records(store, schedule.id)
        assert [r.id for r in records] == [taken_over.ran[0].record_id], [r.body for r in records]
        state = claims.claim_states(store)[(schedule.id, records[0].body["period"])]
        assert (state.state, state.owner, state.record_id) == ("done", "second", records[0].id)
        assert store.verify().ok


def test_a_record_the_previous_holder_appended_late_stands_for_the_period(
        scheduled: tuple[str, Schedule]) -> None:
    # on PostgreSQL a takeover does not wait for the chain lock: the previous holder's record can commit
    # after the new holder looked for one, and the new holder's own record would be the period's second
    db, schedule = scheduled
    with frozen_runner(db, lease=timedelta(minutes=5)) as late, Store.open(db) as store:
        [run] = list_runs(store)
        earlier = store.append(RecordType.REDTEAM_RUN, {
            "schedule_id": schedule.id, "period": "2026-01-01T00:00:00Z", "model": schedule.model,
            "run_id": run.id, "comparison": None, "verdict": "baseline"}, subject=schedule.model)

    [ran] = late[0].ran
    assert (ran.status, ran.record_id) == ("recorded", earlier.id), ran
    with Store.open(db) as store:
        assert [r.id for r in _records(store, schedule.id)] == [earlier.id]
        state = claims.claim_states(store)[(schedule.id, "2026-01-01T00:00:00Z")]
        assert (state.state, state.owner, state.record_id) == ("done", "late", earlier.id)


def _taken_over_while_frozen(redteam: SimpleNamespace, at: str) -> tuple[list[RunDueResult], RunDueResult]:
    """A runner of February's period frozen before its `at` append until its 1 s lease lapsed, and the
    run-due of a second runner that took the period over meanwhile: (the frozen runner's outcomes, the
    second runner's outcome)."""
    feb = parse_instant("2026-02-05T00:00:00Z", "test")
    with (frozen_runner(redteam.db, lease=timedelta(seconds=1), now=feb, at=at) as late,
          Store.open(redteam.db) as store):
        [schedule_id] = {sid for sid, _ in claims.claim_states(store)}
        _wait_for_lapse(store, schedule_id, period="2026-01-31T00:00:00Z")
        taken_over = run_due(store, now=feb, lease=timedelta(minutes=5), owner="second")
    return late, taken_over


def test_a_runner_frozen_before_opening_its_incident_does_not_open_a_second_one(
        redteam: SimpleNamespace) -> None:
    # the runner that took the period over finds it recorded and opens its incident; the frozen one had
    # looked for that incident before freezing and found none
    redteam.add("--every", "30d", "--start", "2026-01-01T00:00:00Z")
    assert redteam.run_due("--now", "2026-01-05T00:00:00Z")[1]["ran"][0]["verdict"] == "baseline"
    redteam.replies.refuse = False  # a regression in the next period
    late, taken_over = _taken_over_while_frozen(redteam, at=RecordType.INCIDENT)

    [done] = taken_over.ran
    [woke] = late[0].ran
    assert done.verdict == "fail" and done.incident_id is not None, done
    assert woke.incident_id == done.incident_id, woke
    with Store.open(redteam.db) as store:
        assert [i.id for i in store.records(type=RecordType.INCIDENT)] == [done.incident_id]
        assert store.verify().ok


def test_a_runner_frozen_before_its_gate_decision_writes_nothing_for_a_period_taken_over(
        redteam: SimpleNamespace) -> None:
    """The late runner's gate decision (its comparison with the previous run) was appended, then its
    redteam_run record refused: a gate decision no record refers to. Its outcome said it failed and that
    the next run-due retries it, while the runner that took the period over had recorded it."""
    redteam.add("--every", "30d", "--start", "2026-01-01T00:00:00Z")
    assert redteam.run_due("--now", "2026-01-05T00:00:00Z")[1]["ran"][0]["verdict"] == "baseline"
    late, taken_over = _taken_over_while_frozen(redteam, at=RecordType.GATE_DECISION)

    [done] = taken_over.ran
    assert done.status == "recorded", done
    with Store.open(redteam.db) as store:
        referenced = {r.body["comparison"]["gate_record"] for r in store.records(type=RecordType.REDTEAM_RUN)
                      if r.body["comparison"]}
        assert [g.id for g in store.records(type=RecordType.GATE_DECISION)] == sorted(referenced)
        assert store.verify().ok
    [woke] = late[0].ran
    assert (woke.status, woke.record_id) == ("taken_over", None), woke
    assert "another runner" in (woke.error or "") and "retries" not in (woke.error or ""), woke
    assert late[0].exit_code == 0


def _records(store: Store, schedule_id: str) -> list[EvidenceRecord]:
    return [r for r in store.records(type=RecordType.REDTEAM_RUN) if r.body["schedule_id"] == schedule_id]


def _wait_for_lapse(store: Store, schedule_id: str, period: str = "2026-01-01T00:00:00Z") -> None:
    """Until the frozen runner's lease has run out (it renews nothing while frozen)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        state = claims.claim_states(store)[(schedule_id, period)]
        if state.lease_until < datetime.now(timezone.utc):
            return
        time.sleep(0.1)
    raise AssertionError("the lease never lapsed")
