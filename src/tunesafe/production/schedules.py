"""Red-team schedules: what to evaluate, how often, and which period is due.

A schedule is evidence: `add_schedule` appends a RecordType.REDTEAM_SCHEDULE record (body action "add")
and `remove_schedule` another one (action "remove"); the current schedules are the fold of those records
in chain order, as the inventory is. Nothing is edited in place, so who scheduled what, and when it was
stopped, stays in the chain.

Time is cut into periods from the schedule's start: period k covers [start + k*every, start +
(k+1)*every). A schedule is due when `now` lies in a period that no runner has finished (see
tunesafe.production.claims for the locking). Missed periods are not made up: a runner that was down for
three periods runs the current one once, because three runs of today's model say nothing about the past.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.types import EvidenceRecord, RecordType

__all__ = ["Schedule", "add_schedule", "current_period", "get_schedule", "parse_instant", "parse_interval",
           "remove_schedule", "schedules"]

_INTERVAL = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MIN_INTERVAL_S = 60 * 60  # a red-team run takes minutes to hours: hourly is the most that makes sense
# Period ends are datetimes: an interval reaching past year 9999 overflowed in every run-due, for every
# schedule. Red-teaming less than yearly is no schedule anyway.
MAX_INTERVAL_S = 366 * 86400


@dataclass(frozen=True)
class Schedule:
    """One active schedule: the model (an inventory name), the evaluation to run and its cadence."""

    id: str
    model: str
    every: str  # as given, e.g. "30d"
    interval_s: int
    start: str  # ISO-8601 UTC: the first period begins here
    suite: str
    attacks: str
    judges: tuple[str, ...]
    limit: int | None
    record_id: int  # the REDTEAM_SCHEDULE record that added it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Period:
    key: str  # ISO-8601 UTC start: the claim key, the same in every runner
    start: datetime
    end: datetime


def parse_interval(text: str) -> int:
    """'12h', '7d', '30d', '2w' (and 'Nm' minutes) -> seconds; an hour to a year."""
    match = _INTERVAL.match(text)
    if not match or int(match.group(1)) == 0:
        raise UserError(f"not an interval: {text!r}", where="--every",
                        fix="use a number and a unit: 12h, 7d, 30d or 2w")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds < MIN_INTERVAL_S:
        raise UserError(f"interval {text!r} is shorter than an hour", where="--every",
                        fix="schedule red-teaming at most hourly, e.g. --every 12h")
    if seconds > MAX_INTERVAL_S:
        raise UserError(f"interval {text!r} is longer than a year", where="--every",
                        fix="schedule red-teaming at least yearly, e.g. --every 30d")
    return seconds


def parse_instant(text: str, where: str) -> datetime:
    """An ISO-8601 time; without a zone it is UTC (schedules never depend on the runner's local zone)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: an offset that takes it outside years 1-9999
        raise UserError(f"not an ISO-8601 time: {text!r}", where=where,
                        fix="use e.g. 2026-01-31T03:00:00Z") from None


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def current_period(schedule: Schedule, now: datetime) -> Period | None:
    """The period `now` falls in; None before the schedule's start."""
    start = parse_instant(schedule.start, "start")
    if now < start:
        return None
    k = int((now - start).total_seconds() // schedule.interval_s)
    begin = start + timedelta(seconds=k * schedule.interval_s)
    return Period(iso(begin), begin, begin + timedelta(seconds=schedule.interval_s))


def next_start(schedule: Schedule, now: datetime) -> datetime:
    """When the next period after `now` begins (the schedule's start if that is still ahead)."""
    period = current_period(schedule, now)
    return parse_instant(schedule.start, "start") if period is None else period.end


def period_state(period: Period | None, claimed: str | None) -> str:
    """What a period's row says, in the CLI and the dashboard alike: the claim's state once someone
    claimed it, "due" while it runs unclaimed, "not started" before the schedule's first period."""
    if claimed is not None:
        return claimed
    return "due" if period is not None else "not started"


# ---- writing -------------------------------------------------------------------------------------------


def add_schedule(store: Store, model: str, *, every: str, suite: str, attacks: str,
                 judges: Iterable[str] = ("default",), limit: int | None = None,
                 start: datetime | None = None, actor: str | None = None) -> Schedule:
    """Validate and record a schedule. UserError (nothing written) for a model not in the inventory, a
    bad interval, an unknown suite, attack or judge, or a limit under 1."""
    from tunesafe.production.inventory import get_model

    get_model(store, model)
    interval_s = parse_interval(every)
    judge_names = tuple(judges) or ("default",)
    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1, got {limit}", where="--limit",
                        fix="pass --limit 1 or more")
    _check_evaluation(suite, attacks, judge_names, limit)
    if Path(suite).expanduser().is_file():  # run-due may run from another folder (cron, a CronJob)
        suite = str(Path(suite).expanduser().resolve())
    schedule_id = f"rt-{uuid.uuid4().hex[:10]}"
    body = {"action": "add", "schedule_id": schedule_id, "model": model,
            "every": every.strip(),
            "interval_s": interval_s, "start": iso(start or datetime.now(timezone.utc)), "suite": suite,
            "attacks": attacks, "judges": list(judge_names), "limit": limit}
    store.append(RecordType.REDTEAM_SCHEDULE, body, actor=actor, subject=model)
    return get_schedule(store, schedule_id)


def remove_schedule(store: Store, schedule_id: str, *, actor: str | None = None) -> Schedule:
    """Stop a schedule (an appended "remove" record; its runs and records stay)."""
    schedule = get_schedule(store, schedule_id)
    store.append(RecordType.REDTEAM_SCHEDULE, {"action": "remove", "schedule_id": schedule_id}, actor=actor,
                 subject=schedule.model)
    return schedule


def _check_evaluation(suite: str, attacks: str, judges: tuple[str, ...], limit: int | None) -> None:
    """Plan the evaluation once now (no model is loaded), so a typo fails at `schedule add`, not at 3 am."""
    from tunesafe import judges as _builtin_judges  # noqa: F401  (registers the built-in judges)
    from tunesafe.engine.config import EvalConfig
    from tunesafe.engine.targets import plan_evaluation
    from tunesafe.judges.base import registry

    plan_evaluation(EvalConfig(suite=suite, attacks=attacks, judges=judges, limit=limit))
    for name in judges:
        if name not in registry:
            raise UserError(f"unknown judge {name!r}", where="--judge",
                            fix=f"use one of {', '.join(registry.names())}")


# ---- reading -------------------------------------------------------------------------------------------


def schedules(store: Store) -> dict[str, Schedule]:
    """The active schedules by id, in the order they were added."""
    return _fold(store.records(type=RecordType.REDTEAM_SCHEDULE))


def get_schedule(store: Store, schedule_id: str) -> Schedule:
    active = schedules(store)
    if schedule_id not in active:
        raise UserError(f"no active red-team schedule {schedule_id!r}", where="ID",
                        fix="see `tunesafe redteam schedule list`")
    return active[schedule_id]


def _fold(records: Iterable[EvidenceRecord]) -> dict[str, Schedule]:
    active: dict[str, Schedule] = {}
    for rec in records:
        body: Mapping[str, Any] = rec.body
        if body.get("action") == "remove":
            active.pop(str(body["schedule_id"]), None)
            continue
        active[str(body["schedule_id"])] = Schedule(
            id=str(body["schedule_id"]), model=str(body["model"]), every=str(body["every"]),
            interval_s=int(body["interval_s"]), start=str(body["start"]), suite=str(body["suite"]),
            attacks=str(body["attacks"]), judges=tuple(body.get("judges") or ("default",)),
            limit=body.get("limit"), record_id=rec.id)
    return active
