"""`tunesafe redteam run-due` end to end: a real loopback model in the inventory, the real engine, smoke
suite and refusal judge, a real SQLite store. Idempotent per period, comparison with the previous
scheduled run, an incident on a regression, claims that lapse when their runner dies, failed runs
retried and resumed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import insert, select, update

from tunesafe.engine.results import load_run
from tunesafe.evidence.schema import RedteamClaimRow
from tunesafe.evidence.store import Store
from tunesafe.policy import default_policy
from tunesafe.production import claims
from tunesafe.production.incidents import get_incident
from tunesafe.production.inventory import get_model
from tunesafe.production.redteam import RunDueResult, ScheduledRun, _run_claimed, version_notes
from tunesafe.production.schedules import current_period, parse_instant, schedules
from tunesafe.types import RecordType

START = "2026-01-01T00:00:00Z"
JAN, LATE_JAN, FEB, MAR = ("2026-01-05T00:00:00Z", "2026-01-30T12:00:00Z", "2026-02-01T00:00:00Z",
                           "2026-03-05T00:00:00Z")


def _records(db: str, type_: str) -> list:  # type: ignore[type-arg]
    with Store.open(db) as store:
        return list(store.records(type=type_))


def test_run_due_runs_each_period_once(redteam: SimpleNamespace) -> None:
    schedule_id = redteam.add("--every", "30d", "--start", START)
    assert redteam.run_due("--now", "2025-12-31T00:00:00Z") == (0, {
        "now": "2025-12-31T00:00:00+00:00", "ran": [], "held_elsewhere": [], "not_run": [], "exit_code": 0})

    code, first = redteam.run_due("--now", JAN)
    assert code == 0 and len(first["ran"]) == 1
    ran = first["ran"][0]
    assert ran["status"] == "recorded" and ran["verdict"] == "baseline" and ran["period"] == START
    requests = len(redteam.server.requests)
    assert requests > 0

    # invoked again in the same period (cron every hour): nothing runs, the model is not called
    for now in (JAN, LATE_JAN):
        assert redteam.run_due("--now", now)[1]["ran"] == []
    assert len(redteam.server.requests) == requests

    code, second = redteam.run_due("--now", FEB)  # the next period: runs again, compared with the first
    assert code == 0 and len(second["ran"]) == 1
    assert second["ran"][0]["verdict"] == "pass" and second["ran"][0]["period"] == "2026-01-31T00:00:00Z"
    assert len(redteam.server.requests) == 2 * requests  # a fresh run: stored answers are not reused

    runs = _records(redteam.db, RecordType.REDTEAM_RUN)
    assert [r.body["schedule_id"] for r in runs] == [schedule_id, schedule_id]
    body = runs[1].body
    assert body["previous_run_id"] == runs[0].body["run_id"] != body["run_id"]
    assert body["comparison"]["n_paired"] == requests and body["comparison"]["n_only_previous"] == 0
    assert body["comparison"]["notes"] == []  # same library and suite: every attempt pairs
    # the versions the run used are pinned in the record
    pinned = body["pinned"]
    assert pinned["suite"]["name"] == "smoke" and len(pinned["suite"]["content_hash"]) == 64
    assert {a["family"] for a in pinned["attacks"]} == {"direct_request", "refusal_suppression",
                                                        "prefix_injection"}
    assert all(a["version"] for a in pinned["attacks"])
    gate = _records(redteam.db, RecordType.GATE_DECISION)
    assert [g.id for g in gate] == [body["comparison"]["gate_record"]]
    assert _records(redteam.db, RecordType.INCIDENT) == []
    listed = redteam.cli("redteam", "schedule", "list", "--json", "--now", FEB)
    assert '"state": "done"' in listed.stdout


def test_regression_between_scheduled_runs_opens_an_incident(redteam: SimpleNamespace) -> None:
    redteam.add("--every", "30d", "--start", START)
    assert redteam.run_due("--now", JAN)[1]["ran"][0]["verdict"] == "baseline"
    redteam.replies.refuse = False  # the hosted model changed behind the same ref: it now complies
    code, out = redteam.run_due("--now", FEB)
    assert code == 1  # cron / the CronJob sees a failure
    ran = out["ran"][0]
    assert ran["verdict"] == "fail" and ran["incident_id"] is not None
    record = _records(redteam.db, RecordType.REDTEAM_RUN)[-1]
    comparison = record.body["comparison"]
    assert comparison["asr"]["before"] < 0.2 and comparison["asr"]["after"] > 0.8
    assert any(r.startswith("overall: ASR rose") for r in comparison["reasons"])
    with Store.open(redteam.db) as store:
        incident = get_incident(store, ran["incident_id"])
        assert incident.source == "redteam" and incident.model == "support-bot"
        assert set(incident.links) == {record.id, comparison["gate_record"]}
        assert store.verify().ok
    # run-due again in that period: no second run, no second incident
    assert redteam.run_due("--now", FEB) == (0, {"now": "2026-02-01T00:00:00+00:00", "ran": [],
                                                 "held_elsewhere": [], "not_run": [], "exit_code": 0})
    assert len(_records(redteam.db, RecordType.INCIDENT)) == 1


def _claim_row(db: str, schedule_id: str, lease_until: datetime, state: str = "running") -> None:
    now = datetime.now(timezone.utc)
    with Store.open(db) as store, store.engine.begin() as conn:
        conn.execute(insert(RedteamClaimRow).values(
            schedule_id=schedule_id, period=START, owner="dead-host:1:abc", state=state, attempts=1,
            claimed_at=now - timedelta(hours=2), lease_until=lease_until))


def test_an_inconclusive_scheduled_comparison_exits_3_never_0() -> None:
    """A run that could not be compared (or too weakly to rule a regression out) exited 0 like a pass, so
    cron never heard of it. A regression or a failed run still decides first."""
    def ran(*verdicts: str, failed: bool = False) -> RunDueResult:
        runs = [ScheduledRun("rt-1", "m", "p", "recorded", verdict=v) for v in verdicts]
        runs += [ScheduledRun("rt-2", "m", "p", "failed", error="down")] if failed else []
        return RunDueResult(now="n", ran=runs)

    assert ran("baseline", "pass").exit_code == 0
    assert ran("pass", "inconclusive").exit_code == 3
    assert ran("inconclusive", failed=True).exit_code == 4
    assert ran("inconclusive", "fail").exit_code == 1


@pytest.mark.parametrize("redteam", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)
def test_a_live_claim_is_left_alone_and_a_lapsed_one_taken_over(redteam: SimpleNamespace) -> None:
    schedule_id = redteam.add("--every", "30d", "--start", START)
    _claim_row(redteam.db, schedule_id, datetime.now(timezone.utc) + timedelta(hours=1))
    code, out = redteam.run_due("--now", JAN)  # another runner is at work on it
    assert code == 0 and out["ran"] == [] and out["held_elsewhere"] == [] and not redteam.server.requests

    with Store.open(redteam.db) as store, store.engine.begin() as conn:  # ... and then its host died
        conn.execute(update(RedteamClaimRow).values(
            lease_until=datetime.now(timezone.utc) - timedelta(minutes=1)))
    code, out = redteam.run_due("--now", JAN)
    assert code == 0 and out["ran"][0]["status"] == "recorded"
    with Store.open(redteam.db) as store, store.engine.connect() as conn:
        row = conn.execute(select(RedteamClaimRow)).one()
    assert row.state == "done" and row.attempts == 2 and row.owner != "dead-host:1:abc"
    assert row.record_id == _records(redteam.db, RecordType.REDTEAM_RUN)[0].id


def test_a_runner_whose_claim_was_taken_over_records_nothing(redteam: SimpleNamespace) -> None:
    """A runner frozen past its lease (a laptop asleep, a VM paused, an event loop blocked) wakes up after
    another runner took its period over: it must not record the run or open an incident beside the new
    holder's, which would make two records and two incidents for one period."""
    schedule_id = redteam.add("--every", "30d", "--start", START)
    assert redteam.run_due("--now", JAN)[1]["ran"][0]["verdict"] == "baseline"
    redteam.replies.refuse = False  # a regression in the next period
    hour = timedelta(hours=1)
    with Store.open(redteam.db) as store:
        schedule = schedules(store)[schedule_id]
        period = current_period(schedule, parse_instant(FEB, "test"))
        assert period is not None
        frozen = claims.claim(store, schedule_id, period.key, "host-a:1:aaaa", hour)
        assert frozen is not None
        with store.engine.begin() as conn:  # its lease ran out while it was frozen ...
            conn.execute(update(RedteamClaimRow).values(lease_until=datetime.now(timezone.utc) - hour))
        holder = claims.claim(store, schedule_id, period.key, "host-b:1:bbbb", hour)  # ... B took over
        assert holder is not None
        woke = _run_claimed(store, schedule, period, frozen, default_policy(), hour, 600.0)
        assert woke.status == "taken_over" and "took the period over" in str(woke.error)
        assert len(list(store.records(type=RecordType.REDTEAM_RUN))) == 1  # the baseline only
        assert list(store.records(type=RecordType.INCIDENT)) == []
        done = _run_claimed(store, schedule, period, holder, default_policy(), hour, 600.0)
        assert done.verdict == "fail" and done.incident_id is not None
        assert len(list(store.records(type=RecordType.REDTEAM_RUN))) == 2
        assert len(list(store.records(type=RecordType.INCIDENT))) == 1


def test_a_failed_run_is_retried_and_resumed(redteam: SimpleNamespace) -> None:
    redteam.add("--every", "30d", "--start", START)
    redteam.server.app.go_down()  # the endpoint fails every request
    code, out = redteam.run_due("--now", JAN, "--max-pause", "0")
    assert code == 4
    failed = out["ran"][0]
    assert failed["status"] == "failed" and failed["run_id"] and failed["error"]
    assert _records(redteam.db, RecordType.REDTEAM_RUN) == []  # never recorded as a pass
    with Store.open(redteam.db) as store:
        assert load_run(store, failed["run_id"]).status != "complete"

    redteam.server.app.come_back()
    code, out = redteam.run_due("--now", JAN)
    assert code == 0
    assert out["ran"][0]["status"] == "recorded" and out["ran"][0]["run_id"] == failed["run_id"]  # resumed


def test_max_leaves_the_rest_due(redteam: SimpleNamespace) -> None:
    first = redteam.add("--every", "7d", "--start", START, "--limit", "4")
    second = redteam.add("--every", "7d", "--start", START, "--limit", "4")
    code, out = redteam.run_due("--now", JAN, "--max", "1")
    assert code == 0 and [r["schedule_id"] for r in out["ran"]] == [first]
    assert [e["schedule_id"] for e in out["not_run"]] == [second]
    assert [r["schedule_id"] for r in redteam.run_due("--now", JAN)[1]["ran"]] == [second]


def test_version_changes_are_named() -> None:
    before = {"suite": {"content_hash": "a"}, "attacks": [
        {"name": "direct_request", "version": "1"}, {"name": "prefix_injection", "version": "1"},
        {"name": "old_attack", "version": "1"}]}
    after = {"suite": {"content_hash": "b"}, "attacks": [
        {"name": "direct_request", "version": "1"}, {"name": "prefix_injection", "version": "2"},
        {"name": "new_attack", "version": "1"}]}
    notes = version_notes(before, after)
    assert notes[0] == "attack versions changed (prefix_injection 1 -> 2): their attempts cannot be paired"
    assert "attacks new since the previous run: new_attack" in notes
    assert "attacks no longer run: old_attack" in notes
    assert any("suite's content changed" in n for n in notes)
    assert version_notes(before, before) == []


def test_a_held_run_of_an_earlier_version_is_not_resumed_for_the_new_one(redteam: SimpleNamespace) -> None:
    """A scheduled run counts for the inventory version it started on. A run left failed on version 1,
    taken over after `models add --new-version`, would mix both versions' answers and count for version
    2: the period is run afresh on version 2, the version-1 run stays as it was."""
    redteam.add("--every", "30d", "--start", START)
    redteam.server.app.go_down()
    failed = redteam.run_due("--now", JAN, "--max-pause", "0")[1]["ran"][0]
    assert failed["status"] == "failed" and failed["run_id"]
    with Store.open(redteam.db) as store:
        first = load_run(store, failed["run_id"])
        assert first.config["model_version"]["version"] == 1  # the run is pinned to the version it started on
    ref = f"openai:support-bot-v2@{redteam.server.url}"
    added = redteam.cli("models", "add", "support-bot", "--new-version", "--ref", ref)
    assert added.exit_code == 0, added.output

    redteam.server.app.come_back()
    code, out = redteam.run_due("--now", JAN)
    ran = out["ran"][0]
    assert code == 0 and ran["status"] == "recorded", ran
    assert ran["run_id"] != failed["run_id"]
    assert any(f"run {failed['run_id']}" in note and "version 2" in note for note in ran["notes"])
    with Store.open(redteam.db) as store:
        fresh = load_run(store, ran["run_id"])
        assert fresh.model_ref == ref and fresh.config["model_version"]["version"] == 2
        assert load_run(store, failed["run_id"]).status != "complete"  # nothing of version 2 added to it
        evaluated = [r.body for r in store.records(type=RecordType.SAFETY_EVAL)]
        assert [(b["run_id"], b["model_version_record"]) for b in evaluated] == [
            (ran["run_id"], get_model(store, "support-bot").record_id)]
        assert _records(redteam.db, RecordType.REDTEAM_RUN)[0].body["superseded_run_id"] == failed["run_id"]
