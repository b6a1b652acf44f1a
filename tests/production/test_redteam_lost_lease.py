"""A runner frozen between finishing its run and recording it (a host asleep, a paused VM) outlives its
lease; another runner takes the period over and records it. The late runner's record is refused under the
chain lock: one REDTEAM_RUN per (schedule, period)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tunesafe.evidence.store import Store
from tunesafe.production import claims
from tunesafe.production.inventory import ModelSpec, add_model
from tunesafe.production.redteam import RunDueResult, run_due
from tunesafe.production.schedules import add_schedule, parse_instant
from tunesafe.testing.openai_server import serve
from tunesafe.types import EvidenceRecord, RecordType

NOW = parse_instant("2026-01-05T00:00:00Z", "test")
WAIT_S = 120  # an upper bound on each step, never a timing the test relies on


class FreezesBeforeRecording(Store):
    """The real store, but the runner using it stops just before it appends its REDTEAM_RUN record until
    the test lets it go on: the moment a frozen host would wake up."""

    frozen = threading.Event()
    thaw = threading.Event()

    def append(self, type: str, body: Mapping[str, Any], actor: str | None = None,
               subject: str | None = None, check: Any = None) -> EvidenceRecord:
        if type == RecordType.REDTEAM_RUN and not self.thaw.is_set():
            self.frozen.set()
            assert self.thaw.wait(WAIT_S)
        return super().append(type, body, actor=actor, subject=subject, check=check)


def test_a_runner_whose_lease_was_taken_over_does_not_record_the_period_again(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with serve() as server:
        with Store.open(db) as store:
            add_model(store, ModelSpec(name="support-bot", ref=f"openai:tunesafe-test@{server.url}"))
            schedule = add_schedule(store, "support-bot", every="30d", suite="smoke",
                                    attacks="direct_request", judges=("refusal",), limit=4,
                                    start=parse_instant("2026-01-01", "test"))
        late: list[RunDueResult] = []
        with FreezesBeforeRecording.open(db) as frozen_store:
            runner = threading.Thread(target=lambda: late.append(
                run_due(frozen_store, now=NOW, lease=timedelta(seconds=1), owner="late")))
            runner.start()
            try:
                assert FreezesBeforeRecording.frozen.wait(WAIT_S)
                with Store.open(db) as store:
                    _wait_for_lapse(store, schedule.id)
                    taken_over = run_due(store, now=NOW, lease=timedelta(minutes=5), owner="second")
            finally:
                FreezesBeforeRecording.thaw.set()
                runner.join(WAIT_S)

    assert [r.status for r in taken_over.ran] == ["recorded"], taken_over.ran
    [lost] = late[0].ran
    assert lost.status == "failed" and "took it over" in (lost.error or ""), lost
    with Store.open(db) as store:
        records = [r for r in store.records(type=RecordType.REDTEAM_RUN)
                   if r.body["schedule_id"] == schedule.id]
        assert [r.id for r in records] == [taken_over.ran[0].record_id], [r.body for r in records]
        state = claims.claim_states(store)[(schedule.id, records[0].body["period"])]
        assert (state.state, state.owner, state.record_id) == ("done", "second", records[0].id)
        assert store.verify().ok


def _wait_for_lapse(store: Store, schedule_id: str) -> None:
    """Until the frozen runner's lease has run out (it renews nothing while frozen)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        [state] = [s for (sid, _), s in claims.claim_states(store).items() if sid == schedule_id]
        if state.lease_until < datetime.now(timezone.utc):
            return
        time.sleep(0.1)
    raise AssertionError("the lease never lapsed")
