"""EU AI Act Art. 73 reporting clocks, in calendar days from the moment the provider (or deployer) became
aware of a serious incident:

    general (Art. 73(2))                                              15 days
    death of a person (Art. 73(4))                                    10 days
    widespread infringement (Art. 3(61)) or a serious incident under
    Art. 3(49)(b), critical infrastructure (Art. 73(3))                2 days

Every incident carries the general clock; each further kind adds its own, and the earliest deadline is the
one that counts. A kind learnt later (a death becomes known on day 3) runs from the time it became known;
the clocks already running keep theirs, so a reclassification never moves the deadline later. The law
also says "immediately" once a causal link is established: these are outer bounds, never a grace period.
Times are UTC. The times a clock runs from or stops at must say their offset (incidents._aware_time);
other times given without one are read as UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tunesafe.errors import UserError

GENERAL = "general"
KIND_DAYS: dict[str, int] = {
    GENERAL: 15,
    "death": 10,
    "widespread": 2,
    "critical_infrastructure": 2,
}
KIND_ARTICLE: dict[str, str] = {
    GENERAL: "Art. 73(2)",
    "death": "Art. 73(4)",
    "widespread": "Art. 73(3), widespread infringement (Art. 3(61))",
    "critical_infrastructure": "Art. 73(3), serious incident under Art. 3(49)(b)",
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class Deadline:
    kind: str
    days: int
    due_at: datetime
    article: str
    start: datetime  # when the facts of this kind became known: the clock runs from here

    def as_dict(self) -> dict[str, str | int]:
        return {"kind": self.kind, "days": self.days, "due_at": iso(self.due_at), "article": self.article,
                "start": iso(self.start)}


def check_kinds(kinds: str | Iterable[str], where: str = "--kind") -> tuple[str, ...]:
    """Kinds as given (one name, a comma-separated list, or an iterable), validated, general first, each
    once, in the order of KIND_DAYS so the same set always serialises the same way."""
    names = kinds.split(",") if isinstance(kinds, str) else [k for part in kinds for k in part.split(",")]
    wanted = {n.strip() for n in names if n.strip()}
    unknown = sorted(wanted - KIND_DAYS.keys())
    if unknown:
        raise UserError(f"unknown incident kind {', '.join(map(repr, unknown))}", where=where,
                        fix=f"use one or more of {', '.join(KIND_DAYS)}")
    return tuple(k for k in KIND_DAYS if k in wanted or k == GENERAL)


def deadlines(aware_at: datetime, kinds: Iterable[str],
              starts: Mapping[str, datetime] | None = None) -> tuple[Deadline, ...]:
    """One deadline per applicable kind, earliest first (ties keep the KIND_DAYS order). Each runs from
    `starts[kind]` where given (a kind learnt after the incident was opened), else from `aware_at`."""
    starts = starts or {}
    found = [Deadline(kind, KIND_DAYS[kind], start + timedelta(days=KIND_DAYS[kind]), KIND_ARTICLE[kind],
                      start)
             for kind in check_kinds(tuple(kinds)) for start in [starts.get(kind, aware_at)]]
    return tuple(sorted(found, key=lambda d: d.due_at))


def parse_time(text: str, where: str) -> datetime:
    """ISO 8601 to an aware UTC datetime; 'Z' and offsets accepted, no offset means UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        return as_utc(value)
    except (ValueError, OverflowError):  # OverflowError: an offset that takes it outside years 1-9999
        raise UserError(f"not an ISO 8601 time: {text!r}", where=where,
                        fix="write e.g. 2026-12-04T09:30:00Z (UTC) or 2026-12-04T10:30:00+01:00") from None


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def iso(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_duration(text: str, where: str) -> timedelta:
    """'3d', '12h', '30m' (also fractional, '1.5d')."""
    match = _DURATION.match(text)
    if not match:
        raise UserError(f"not a duration: {text!r}", where=where,
                        fix="write a number and a unit: 3d, 12h or 30m")
    try:
        return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:
        raise UserError(f"duration {text!r} is too long", where=where,
                        fix="give at most a few years, e.g. 30d") from None


def span(seconds: float) -> str:
    """A duration for people: '2d 3h', or '5h 12m' under a day."""
    hours = int(seconds // 3600)
    return f"{hours // 24}d {hours % 24}h" if hours >= 24 else f"{hours}h {int(seconds % 3600 // 60)}m"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
