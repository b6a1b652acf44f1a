"""Incidents: a harmful output, a successful jailbreak or a regression seen in production, tracked until
it is closed, with the EU AI Act Art. 73 reporting clock (tunesafe.production.clocks).

Like the inventory, nothing is edited in place. Opening writes one RecordType.INCIDENT record (subject =
the model's name, so the incident shows in the model's lineage); every later change (status, owner,
severity, kind, a note, a linked record, a conversation, the report time, the closing resolution) is a
RecordType.INCIDENT_UPDATE record naming the incident, and the current state is the fold of the records in
chain order. An incident's id is the id of its INCIDENT record.

A conversation attached to an incident is the *request* side only ({"messages": [...], "category": ...}),
never the model's answer: it is what `to_suite` turns into regression behaviours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.production.clocks import (
    Deadline,
    as_utc,
    check_kinds,
    deadlines,
    iso,
    parse_time,
    span,
    utcnow,
)
from tunesafe.types import EvidenceRecord, RecordType

SEVERITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "investigating", "mitigated", "reported", "closed")
UPDATE_STATUSES = ("investigating", "mitigated", "reported")  # closing needs a resolution: close_incident
ROLES = ("system", "user", "assistant", "tool")
DUE_SOON = timedelta(days=1)  # PROD-04: "alert at T-1d"
_MODEL = re.compile(r"^[A-Za-z0-9][\w.@:/+-]{0,199}$")
_SOURCE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
_ID = re.compile(r"^(?:INC-)?(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Incident:
    """The current state of one incident (its INCIDENT record plus every update since)."""

    id: int
    model: str
    title: str
    severity: str
    status: str
    owner: str | None
    kinds: tuple[str, ...]  # always includes "general"
    source: str
    opened_at: datetime
    aware_at: datetime
    deadlines: tuple[Deadline, ...]  # earliest first
    links: tuple[int, ...]  # linked evidence record ids
    conversations: tuple[Mapping[str, Any], ...] = ()
    notes: tuple[Mapping[str, Any], ...] = ()  # {record, at, actor, text}
    details: Mapping[str, Any] = field(default_factory=dict)
    reported_at: datetime | None = None
    closed_at: datetime | None = None
    resolution: str | None = None
    opened_by: str = ""
    record_hash: str = ""
    updates: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return f"INC-{self.id}"

    @property
    def deadline(self) -> Deadline:
        """The earliest applicable Art. 73 deadline: the one that counts."""
        return self.deadlines[0]

    @property
    def clock_stopped(self) -> bool:
        """Reported to the authority (or closed): no deadline is running any more."""
        return self.reported_at is not None or self.status == "closed"

    def time_left(self, now: datetime) -> timedelta | None:
        """Until the earliest deadline (negative when past); None once the clock stopped."""
        return None if self.clock_stopped else self.deadline.due_at - as_utc(now)

    def overdue(self, now: datetime) -> bool:
        left = self.time_left(now)
        return left is not None and left < timedelta(0)

    def missed(self, now: datetime) -> bool:
        """The deadline passed before a report: still running, reported late, or closed unreported after
        it (closing stops the clock, never the fact that it ran out)."""
        end = self.reported_at or self.closed_at
        return self.overdue(now) if end is None else end > self.deadline.due_at

    def clock(self, now: datetime) -> str:
        """The clock for people: time left, OVERDUE by how much, or why it stopped."""
        if self.reported_at is not None:
            late = (self.reported_at - self.deadline.due_at).total_seconds()
            return f"stopped: reported {iso(self.reported_at)}" + (
                f", {span(late)} after the deadline" if late > 0 else "")
        left = self.time_left(now)
        if left is None:
            if self.closed_at is None:
                return "stopped: closed without a report"
            seconds = (self.deadline.due_at - self.closed_at).total_seconds()
            return ("stopped: closed without a report" + (f", OVERDUE by {span(-seconds)} when closed"
                    if seconds < 0 else f" ({span(seconds)} before the deadline)"))
        seconds = left.total_seconds()
        if seconds < 0:
            return f"OVERDUE by {span(-seconds)}"
        return f"{'DUE SOON: ' if left <= DUE_SOON else ''}{span(seconds)} left"

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "label": self.label, "model": self.model, "title": self.title,
            "severity": self.severity, "status": self.status, "owner": self.owner, "kinds": list(self.kinds),
            "source": self.source, "opened_at": iso(self.opened_at), "aware_at": iso(self.aware_at),
            "deadline": self.deadline.as_dict(), "deadlines": [d.as_dict() for d in self.deadlines],
            "clock_stopped": self.clock_stopped, "links": list(self.links),
            "conversations": [dict(c) for c in self.conversations], "notes": [dict(n) for n in self.notes],
            "details": dict(self.details),
            "reported_at": iso(self.reported_at) if self.reported_at else None,
            "closed_at": iso(self.closed_at) if self.closed_at else None, "resolution": self.resolution,
            "opened_by": self.opened_by, "record_hash": self.record_hash, "updates": list(self.updates),
        }
        if now is not None:
            left = self.time_left(now)
            out["now"] = iso(now)
            out["overdue"] = self.overdue(now)
            out["missed"] = self.missed(now)
            out["seconds_left"] = None if left is None else int(left.total_seconds())
            out["clock"] = self.clock(now)
        return out


# ---- validation ----------------------------------------------------------------------------------------


def check_severity(severity: str, where: str = "--severity") -> str:
    if severity not in SEVERITIES:
        raise UserError(f"unknown severity {severity!r}", where=where,
                        fix=f"use one of {', '.join(SEVERITIES)}")
    return severity


def parse_id(text: str | int, where: str = "ID") -> int:
    match = _ID.match(str(text).strip())
    if not match:
        raise UserError(f"not an incident id: {text!r}", where=where,
                        fix="give the number shown by `tunesafe incidents list` (e.g. 12 or INC-12)")
    return int(match.group(1))


def _check_model(model: str) -> str:
    if not _MODEL.match(model):
        raise UserError(f"invalid model name {model!r}", where="MODEL",
                        fix="use the inventory name: letters, digits and . _ - : / @ + (at most 200)")
    return model


def _check_text(text: str, where: str) -> str:
    if not text or not text.strip():
        raise UserError("empty text", where=where, fix="write a short description")
    return text.strip()


def _check_source(source: str) -> str:
    if not _SOURCE.match(source):
        raise UserError(f"invalid incident source {source!r}", where="--source",
                        fix="use a short lower-case word such as redteam, monitor or manual")
    return source


def _check_links(store: Store, links: Iterable[int]) -> list[int]:
    out: list[int] = []
    for link in links:
        try:
            store.get(int(link))
        except UserError as exc:
            raise UserError(exc.message, where="--evidence/--link",
                            fix="link existing evidence records (see `tunesafe models show`)") from exc
        if int(link) not in out:
            out.append(int(link))
    return out


def _aware_time(value: datetime | str | None, now: datetime, where: str) -> datetime:
    """A time a legal clock runs from or stops at. One without an offset is refused rather than read as
    UTC: a local time taken for UTC puts an EU deadline 1-2 hours late, the unsafe side."""
    if value is not None and not _has_offset(value):
        raise UserError(f"{value} does not say its UTC offset", where=where,
                        fix="add it: 2026-12-04T09:30:00Z for UTC, 2026-12-04T10:30:00+01:00 for CET")
    when = now if value is None else parse_time(value, where) if isinstance(value, str) else as_utc(value)
    if when > now:
        raise UserError(f"{iso(when)} is in the future (now {iso(now)})", where=where,
                        fix="give the time it already happened, in UTC (e.g. 2026-12-04T09:30:00Z)")
    return when


def _has_offset(value: datetime | str) -> bool:
    if isinstance(value, datetime):
        return value.tzinfo is not None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return True  # not a time at all: parse_time names that
    return parsed.tzinfo is not None


def check_conversations(items: Iterable[Mapping[str, Any]],
                        where: str = "--conversation") -> list[dict[str, Any]]:
    """Normalise conversations to {"messages": [{role, content}], "category"?}: the request side only.
    Trailing assistant turns (the answer) are dropped; the request must end with a user turn."""
    out: list[dict[str, Any]] = []
    for number, item in enumerate(items, 1):
        here = f"{where} #{number}"
        raw = item.get("messages")
        if raw is None and isinstance(item.get("request"), Mapping):
            raw = item["request"].get("messages")
        if not isinstance(raw, list) or not raw:
            raise UserError("no request messages", where=here,
                            fix='give {"messages": [{"role": "user", "content": "..."}]} per line')
        messages = []
        for msg in raw:
            if not isinstance(msg, Mapping) or msg.get("role") not in ROLES or not isinstance(
                    msg.get("content"), str):
                raise UserError(f"bad message {msg!r}", where=here,
                                fix=f"each message needs a role ({', '.join(ROLES)}) and text content")
            messages.append({"role": msg["role"], "content": msg["content"]})
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
        if not messages or messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
            raise UserError("the request does not end with a user message", where=here,
                            fix="attach the messages sent to the model, ending with the user turn")
        conversation: dict[str, Any] = {"messages": messages}
        if item.get("category"):
            conversation["category"] = str(item["category"])
        out.append(conversation)
    return out


# ---- reading -------------------------------------------------------------------------------------------


def _opened(rec: EvidenceRecord) -> Incident:
    body = rec.body
    aware_at = parse_time(body["aware_at"], f"record {rec.id}")
    kinds = tuple(body.get("kinds", ("general",)))
    return Incident(
        id=rec.id, model=body["model"], title=body["title"], severity=body["severity"],
        status=body.get("status", "open"), owner=body.get("owner"), kinds=kinds, source=body["source"],
        opened_at=parse_time(rec.created_at, f"record {rec.id}"), aware_at=aware_at,
        deadlines=deadlines(aware_at, kinds), links=tuple(body.get("links", ())),
        conversations=tuple(body.get("conversations", ())), details=body.get("details", {}),
        opened_by=rec.actor, record_hash=rec.hash)


def _apply(incident: Incident, rec: EvidenceRecord) -> Incident:
    body = rec.body
    changes: dict[str, Any] = {k: body[k] for k in ("status", "owner", "severity", "resolution") if k in body}
    if "kinds" in body:
        known = parse_time(body.get("kinds_known_at", rec.created_at), f"record {rec.id}")
        changes["kinds"] = tuple(body["kinds"])
        changes["deadlines"] = _reclassified(incident, changes["kinds"], known)
    for key in ("reported_at", "closed_at"):
        if key in body:
            changes[key] = parse_time(body[key], f"record {rec.id}")
    if body.get("note"):
        changes["notes"] = (*incident.notes, {"record": rec.id, "at": rec.created_at, "actor": rec.actor,
                                              "text": body["note"]})
    if body.get("links"):
        changes["links"] = (*incident.links, *(i for i in body["links"] if i not in incident.links))
    if body.get("conversations"):
        changes["conversations"] = (*incident.conversations, *body["conversations"])
    if body.get("details"):
        changes["details"] = {**incident.details, **body["details"]}
    return replace(incident, **changes, updates=(*incident.updates, rec.id))


def _reclassified(incident: Incident, kinds: Iterable[str], known: datetime) -> tuple[Deadline, ...]:
    """The deadlines once the kinds are `kinds`: a kind kept keeps its clock, a kind added runs from
    `known`, the time its facts became known (Art. 73(4) counts a death from awareness of the death)."""
    starts = {d.kind: d.start for d in incident.deadlines}
    return deadlines(incident.aware_at, kinds, {k: starts.get(k, known) for k in kinds})


def fold(records: Iterable[EvidenceRecord]) -> dict[int, Incident]:
    """Every incident's current state, by id, from INCIDENT and INCIDENT_UPDATE records."""
    state: dict[int, Incident] = {}
    for rec in sorted(records, key=lambda r: r.id):
        if rec.type == RecordType.INCIDENT:
            state[rec.id] = _opened(rec)
        elif (target := rec.body.get("incident")) in state:
            state[target] = _apply(state[target], rec)
    return state


def incidents(store: Store) -> dict[int, Incident]:
    opened = store.records(type=RecordType.INCIDENT)
    return fold([*opened, *store.records(type=RecordType.INCIDENT_UPDATE)])


def get_incident(store: Store, incident_id: int | str,
                 known: Mapping[int, Incident] | None = None) -> Incident:
    number = parse_id(incident_id)
    known = incidents(store) if known is None else known
    if number not in known:
        raise UserError(f"no incident {number}", where="ID",
                        fix="see `tunesafe incidents list` for the ids")
    return known[number]


def list_incidents(store: Store, *, model: str | None = None, status: str | None = None) -> list[Incident]:
    if status is not None and status not in STATUSES:
        raise UserError(f"unknown status {status!r}", where="--status",
                        fix=f"use one of {', '.join(STATUSES)}")
    found = [i for i in incidents(store).values()
             if (model is None or i.model == model) and (status is None or i.status == status)]
    return sorted(found, key=lambda i: i.id)


def due_incidents(store: Store, *, within: timedelta, now: datetime | None = None) -> list[Incident]:
    """Incidents whose clock still runs and whose earliest deadline is past or within `within` of `now`,
    most urgent first."""
    now = as_utc(now) if now is not None else utcnow()
    found = [i for i in incidents(store).values()
             if (left := i.time_left(now)) is not None and left <= within]
    return sorted(found, key=lambda i: (i.deadline.due_at, i.id))


# ---- writing -------------------------------------------------------------------------------------------


def open_incident(store: Store, *, model: str, title: str, severity: str, source: str,
                  evidence: Sequence[int] = (), details: Mapping[str, Any] | None = None,
                  aware_at: datetime | str | None = None, kind: str = "general", owner: str | None = None,
                  conversations: Sequence[Mapping[str, Any]] = (), actor: str | None = None,
                  now: datetime | None = None, check: Callable[[], None] | None = None) -> Incident:
    """Open an incident on `model` (an INCIDENT record). `kind` selects the Art. 73 clock: general,
    death, widespread or critical_infrastructure (comma-separated for several: the earliest counts).
    `aware_at` defaults to now. UserError for bad input; nothing is written then. `check`: run under the
    chain lock before the record is appended (Store.append), e.g. that no incident covers it yet."""
    body = incident_body(model=model, title=title, severity=severity, source=source, details=details,
                         aware_at=aware_at, kind=kind, owner=owner, conversations=conversations, now=now)
    return record_incident(store, body, evidence=evidence, actor=actor, check=check)


def record_incident(store: Store, body: Mapping[str, Any], *, evidence: Sequence[int] = (),
                    actor: str | None = None, check: Callable[[], None] | None = None) -> Incident:
    """Record an `incident_body`, linking the `evidence` records (each must be in the store)."""
    rec = store.append(RecordType.INCIDENT, {**body, "links": _check_links(store, evidence)}, actor=actor,
                       subject=body["model"], check=check)
    return get_incident(store, rec.id)


def incident_body(*, model: str, title: str, severity: str, source: str,
                  details: Mapping[str, Any] | None = None, aware_at: datetime | str | None = None,
                  kind: str = "general", owner: str | None = None,
                  conversations: Sequence[Mapping[str, Any]] = (),
                  now: datetime | None = None) -> dict[str, Any]:
    """The INCIDENT body open_incident records, but for its links: every check that needs no store, so a
    command can refuse bad input before it opens the store (and creates one at a new --db path)."""
    now = as_utc(now) if now is not None else utcnow()
    kinds = check_kinds(kind)
    aware = _aware_time(aware_at, now, "--aware-at")
    try:
        deadlines(aware, kinds)
    except OverflowError:  # stored, it would break every later read of the incidents
        raise UserError(f"the reporting deadlines of {iso(aware)} fall after the year 9999",
                        where="--aware-at",
                        fix="give the real time of awareness (and --now, if set)") from None
    return {
        "model": _check_model(model), "title": _check_text(title, "--title"),
        "severity": check_severity(severity), "status": "open", "owner": owner,
        "kinds": list(kinds), "source": _check_source(source),
        "aware_at": iso(aware),
        "conversations": check_conversations(conversations),
        "details": dict(details or {}),
    }


def update_incident(store: Store, incident_id: int | str, *, status: str | None = None,
                    owner: str | None = None, severity: str | None = None, note: str | None = None,
                    kind: str | Sequence[str] | None = None, links: Sequence[int] = (),
                    conversations: Sequence[Mapping[str, Any]] = (),
                    reported_at: datetime | str | None = None, details: Mapping[str, Any] | None = None,
                    aware_at: datetime | str | None = None, actor: str | None = None,
                    now: datetime | None = None) -> Incident:
    """Append an INCIDENT_UPDATE. `kind` replaces the kinds (general always stays): a kind added runs its
    clock from `aware_at`, when its facts became known (default now); a kind removed may not extend a
    deadline that has already passed. `links` and `conversations` add to those already attached;
    `details` keys replace those of the same name. `reported_at` (or status "reported", then the time
    defaults to now) stops the clock."""
    now = as_utc(now) if now is not None else utcnow()
    incident = get_incident(store, incident_id)
    _check_not_closed(incident)
    changes: dict[str, Any] = {}
    if status is not None:
        if status not in UPDATE_STATUSES:
            fix = ("close it with `tunesafe incidents close ID --resolution TEXT`" if status == "closed"
                   else f"use one of {', '.join(UPDATE_STATUSES)}")
            raise UserError(f"cannot set status {status!r} here", where="--status", fix=fix)
        changes["status"] = status
    if owner is not None:
        changes["owner"] = _check_text(owner, "--owner")
    if severity is not None:
        changes["severity"] = check_severity(severity)
    kinds = None if kind is None else check_kinds(kind)
    if kinds is not None:
        changes.update(_kind_change(incident, kinds, aware_at, now))
    elif aware_at is not None:
        raise UserError("--aware-at on an update is the time a new --kind became known", where="--aware-at",
                        fix="give it with --kind (the time of first awareness cannot change)")
    if reported_at is not None or status == "reported":
        when = _aware_time(reported_at, now, "--reported-at")
        if when < incident.aware_at:
            raise UserError(f"reported at {iso(when)}, before awareness at {iso(incident.aware_at)}",
                            where="--reported-at", fix="give the time the report was submitted, in UTC")
        changes["reported_at"] = iso(when)
        changes.setdefault("status", "reported")
    if note is not None:
        changes["note"] = _check_text(note, "--note")
    if links:
        changes["links"] = [i for i in _check_links(store, links) if i not in incident.links]
    if conversations:
        changes["conversations"] = check_conversations(conversations)
    if details:
        changes["details"] = dict(details)
    if not changes:
        raise UserError("nothing to update", where=incident.label,
                        fix="pass --status, --owner, --severity, --kind, --note, --link, --conversation, "
                            "--field or --reported-at")
    # the deadline check again under the lock: a kind another process added since the read may have a
    # deadline that passed, which this change must not extend
    again = None if kinds is None else lambda fresh: _kind_change(fresh, kinds, aware_at, now)
    store.append(RecordType.INCIDENT_UPDATE, {"incident": incident.id, **changes}, actor=actor,
                 subject=incident.model, check=_still_open(store, incident.id, also=again))
    return get_incident(store, incident.id)


def _kind_change(incident: Incident, kinds: tuple[str, ...], aware_at: datetime | str | None,
                 now: datetime) -> dict[str, Any]:
    """The update body for new kinds, or UserError: a time of knowledge outside [awareness, now], or a
    downgrade that would move a deadline already passed (and not met by a report) later."""
    known = _aware_time(aware_at, now, "--aware-at")
    if known < incident.aware_at:
        raise UserError(f"{iso(known)} is before the incident's awareness at {iso(incident.aware_at)}",
                        where="--aware-at", fix="give the time the new facts became known, in UTC")
    try:
        after = _reclassified(incident, kinds, known)
    except OverflowError:
        raise UserError(f"the reporting deadlines of {iso(known)} fall after the year 9999",
                        where="--aware-at", fix="give the real time the new facts became known") from None
    due = incident.deadline
    if incident.overdue(now) and after[0].due_at > due.due_at:
        raise UserError(f"{incident.label}'s {due.kind} deadline {iso(due.due_at)} ({due.article}) has "
                        f"already passed without a report; reclassifying cannot extend it", where="--kind",
                        fix="keep the kind and file the report (`--reported-at`), explaining in a --note")
    return {"kinds": list(kinds), "kinds_known_at": iso(known)}


def close_incident(store: Store, incident_id: int | str, *, resolution: str, actor: str | None = None,
                   now: datetime | None = None) -> Incident:
    """Close with a resolution (root cause, corrective action): an INCIDENT_UPDATE, final."""
    now = as_utc(now) if now is not None else utcnow()
    incident = get_incident(store, incident_id)
    _check_not_closed(incident, closing=True)
    body = {"incident": incident.id, "status": "closed",
            "resolution": _check_text(resolution, "--resolution"), "closed_at": iso(now)}
    store.append(RecordType.INCIDENT_UPDATE, body, actor=actor, subject=incident.model,
                 check=_still_open(store, incident.id, closing=True))
    return get_incident(store, incident.id)


def _check_not_closed(incident: Incident, *, closing: bool = False) -> None:
    if incident.status == "closed" and closing:
        raise UserError(f"{incident.label} is already closed", where="ID", fix="nothing to do")
    if incident.status == "closed":
        raise UserError(f"{incident.label} is closed", where="ID",
                        fix="open a new incident and link this one's records with --evidence")


def _still_open(store: Store, incident_id: int, *, closing: bool = False,
                also: Callable[[Incident], object] | None = None) -> Callable[[], None]:
    """The closed check again, for under the chain lock: another process may have closed the incident
    since it was read, and a change appended after the close would reopen it or close it twice. `also`:
    a further check of the incident as read there."""

    def check() -> None:
        incident = get_incident(store, incident_id)
        _check_not_closed(incident, closing=closing)
        if also is not None:
            also(incident)

    return check
