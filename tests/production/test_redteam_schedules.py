"""Red-team schedules: add, list and remove through the CLI (recorded as evidence), bad input refused with
exit 2 and nothing stored, and which period is due at a fixed time."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.production.schedules import (
    Schedule,
    current_period,
    next_start,
    parse_instant,
    parse_interval,
)
from tunesafe.types import RecordType

START = "2026-01-01T00:00:00Z"
REPO = Path(__file__).resolve().parents[2]


def _schedule(every_s: int, start: str = START) -> Schedule:
    return Schedule(id="rt-x", model="m", every="x", interval_s=every_s, start=start, suite="smoke",
                    attacks="all", judges=("default",), limit=None, record_id=1)


def _at(text: str) -> datetime:
    return parse_instant(text, "test")


def test_add_list_remove_are_evidence(redteam: SimpleNamespace) -> None:
    first = redteam.add("--every", "30d", "--start", START)
    second = redteam.add("--every", "12h", "--limit", "5")
    listed = redteam.cli("redteam", "schedule", "list", "--json", "--now", "2026-01-05T00:00:00Z")
    assert listed.exit_code == 0, listed.output
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {first, second}
    assert rows[first]["every"] == "30d" and rows[first]["interval_s"] == 30 * 86400
    assert rows[first]["period"] == START and rows[first]["state"] == "due"
    assert rows[first]["next"] == "2026-01-31T00:00:00Z"
    assert rows[second]["limit"] == 5 and rows[second]["judges"] == "refusal"

    removed = redteam.cli("redteam", "schedule", "remove", first)
    assert removed.exit_code == 0, removed.output
    listed = redteam.cli("redteam", "schedule", "list", "--json")
    assert [row["id"] for row in json.loads(listed.stdout)] == [second]
    with Store.open(redteam.db) as store:
        records = list(store.records(type=RecordType.REDTEAM_SCHEDULE))
        assert [r.body["action"] for r in records] == ["add", "add", "remove"]
        assert all(r.subject == "support-bot" for r in records)
        assert store.verify().ok


@pytest.mark.parametrize(("args", "where"), [
    (("no-such-model", "--every", "30d"), "NAME"),
    (("support-bot", "--every", "30x"), "--every"),
    (("support-bot", "--every", "0d"), "--every"),
    (("support-bot", "--every", "30m"), "--every"),  # shorter than an hour
    # past year 9999 from the start: stored, it crashed every later run-due, for every schedule
    (("support-bot", "--every", "600000w"), "--every"),
    (("support-bot", "--every", "7d", "--start", "next tuesday"), "--start"),
    (("support-bot", "--every", "7d", "--start", "0001-01-01T00:00:00+01:00"), "--start"),  # before year 1
    (("support-bot", "--every", "7d", "--limit", "0"), "--limit"),
    (("support-bot", "--every", "7d", "--suite", "no-such-suite"), "suite"),
    (("support-bot", "--every", "7d", "--attacks", "no_such_attack"), "attack"),
    (("support-bot", "--every", "7d", "--judge", "no-such-judge"), "judge"),
])
def test_bad_schedule_input_exits_2_and_stores_nothing(redteam: SimpleNamespace, args: tuple[str, ...],
                                                      where: str) -> None:
    redteam.add("--every", "30d")
    with Store.open(redteam.db) as store:
        before = store.verify().checked
    result = redteam.cli("redteam", "schedule", "add", *args)
    assert result.exit_code == 2, result.output
    assert where in result.output and "fix:" in result.output
    with Store.open(redteam.db) as store:
        assert store.verify().checked == before  # nothing appended, nothing lost


def test_remove_unknown_and_bad_now_exit_2(redteam: SimpleNamespace) -> None:
    assert redteam.cli("redteam", "schedule", "remove", "rt-nope").exit_code == 2
    schedule_id = redteam.add("--every", "30d")
    assert redteam.cli("redteam", "schedule", "remove", schedule_id).exit_code == 0
    again = redteam.cli("redteam", "schedule", "remove", schedule_id)  # removed: no longer active
    assert again.exit_code == 2 and "no active red-team schedule" in again.output
    assert redteam.cli("redteam", "run-due", "--now", "yesterday").exit_code == 2
    assert redteam.cli("redteam", "run-due", "--max", "0").exit_code == 2


def test_intervals() -> None:
    assert parse_interval("12h") == 12 * 3600
    assert parse_interval("7d") == 7 * 86400
    assert parse_interval(" 30d ") == 30 * 86400
    assert parse_interval("2w") == 14 * 86400
    assert parse_interval("90m") == 90 * 60
    assert parse_interval("366d") == 366 * 86400
    for bad in ("30", "d", "1.5d", "-1d", "59m", "30 days", "367d", "99999999999999999999w"):
        with pytest.raises(UserError):
            parse_interval(bad)


def test_periods_at_fixed_times() -> None:
    monthly = _schedule(30 * 86400)
    assert current_period(monthly, _at("2025-12-31T23:59:59Z")) is None  # before the start
    assert next_start(monthly, _at("2025-12-31T00:00:00Z")) == _at(START)
    first = current_period(monthly, _at(START))
    assert first is not None and first.key == START
    same = current_period(monthly, _at("2026-01-30T23:59:59Z"))
    assert same is not None and same.key == START  # still the first period: one run for all of it
    second = current_period(monthly, _at("2026-01-31T00:00:00Z"))
    assert second is not None and second.key == "2026-01-31T00:00:00Z"
    # a runner down for months runs the current period once, not every missed one
    later = current_period(monthly, _at("2026-06-15T12:00:00Z"))
    assert later is not None and later.key == "2026-05-31T00:00:00Z"
    assert later.end == _at("2026-06-30T00:00:00Z")


def test_times_without_a_zone_are_utc() -> None:
    assert parse_instant("2026-01-01T03:00:00", "x") == datetime(2026, 1, 1, 3, tzinfo=timezone.utc)
    assert parse_instant("2026-01-01T04:00:00+01:00", "x") == datetime(2026, 1, 1, 3, tzinfo=timezone.utc)


def test_the_cronjob_example_runs_a_real_command(redteam: SimpleNamespace) -> None:
    manifest = yaml.safe_load((REPO / "docs" / "examples" / "redteam-cronjob.yaml").read_text())
    assert manifest["kind"] == "CronJob" and manifest["spec"]["concurrencyPolicy"] == "Forbid"
    container = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    args = list(container["args"])
    policy = args.index("--policy")
    args[policy + 1] = str(REPO / "src" / "tunesafe" / "policy" / "default_policy.yaml")
    result = redteam.cli(*args, "--now", "2020-01-01T00:00:00Z", "--json")  # every option exists
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ran"] == []
