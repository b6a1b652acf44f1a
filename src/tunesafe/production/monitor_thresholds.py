"""Policy thresholds on monitored traffic (the `monitor:` section of the policy) and the incidents they open.

A threshold is checked per model and UTC day on the stored aggregates (monitor_aggregate.daily). When one
is crossed, the (model, day, threshold) window is claimed in monitor_alerts (a unique key: INSERT ... ON
CONFLICT DO NOTHING, so concurrent ingests on SQLite or PostgreSQL claim it once) and one incident is
opened through tunesafe.production.incidents with source "monitor", linking the ingest batches' evidence
records and carrying the offending requests (request side only) and their record hashes. A window already
claimed opens nothing: re-ingesting, or more bad traffic the same day, never opens a second incident for
the same threshold. If opening fails the claim is released, so the next ingest tries again; a claim left
without its incident by a process killed outright is taken over by the next ingest after STALE_CLAIM.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tunesafe.errors import UserError
from tunesafe.evidence.schema import MonitorAlertRow
from tunesafe.evidence.store import Store
from tunesafe.policy.model import MonitorPolicy
from tunesafe.production.clocks import check_kinds, utcnow
from tunesafe.production.monitor_aggregate import DayStats, daily, offending
from tunesafe.reports.view import percents_apart
from tunesafe.types import RecordType

CONVERSATIONS = 20  # attached to an incident; the rest are linked by hash in its details
# A window claimed this long ago without an incident id lost its ingest while opening it; opening takes
# seconds, so a live one is never this old.
STALE_CLAIM = timedelta(minutes=10)


@dataclass(frozen=True)
class Crossing:
    rule: str
    value: float
    limit: float
    detail: str

    @property
    def title(self) -> str:
        return self.detail


def crossings(stats: DayStats, policy: MonitorPolicy) -> list[Crossing]:
    """The thresholds this day's traffic exceeds."""
    found = []
    counted = (("successful_jailbreaks", stats.successful_jailbreaks, policy.max_successful_jailbreaks),
               ("harmful_completions", stats.harmful, policy.max_harmful_completions))
    for rule, count, limit in counted:
        if limit is not None and count > limit:
            text = f"{count} {rule.replace('_', ' ')} on {stats.day} (limit {limit})"
            found.append(Crossing(rule, count, limit, text))
    rated = (("harmful_rate", stats.harmful_rate, policy.max_harmful_rate),
             ("jailbreak_rate", stats.jailbreak_rate, policy.max_jailbreak_rate),
             ("blocked_rate", stats.blocked_rate, policy.max_blocked_rate),
             ("error_rate", stats.error_rate, policy.max_error_rate))
    for rule, rate, most in rated:
        if most is None or rate.rate is None or rate.rate <= most:
            continue
        # A quiet day has too few records for its rate to mean much, unless even the interval's low end is
        # over the limit: 50 harmful answers of 99 must not wait for a hundredth record.
        if rate.n < policy.min_records and not (rate.low is not None and rate.low > most):
            continue
        # 5.04% must not print as the 5.0% it exceeds, nor an interval's end as the limit it is not
        (shown, low, high), bound = percents_apart((rate.rate, rate.low or 0.0, rate.high or 0.0), most)
        text = (f"{rule.replace('_', ' ')} {shown}% on {stats.day} ({rate.k}/{rate.n}, "
                f"95% CI {low}%-{high}%; limit {bound}%)")
        found.append(Crossing(rule, rate.rate, most, text))
    return found


def open_incidents(store: Store, model: str, days: Iterable[str], policy: MonitorPolicy, *,
                   batch: tuple[str, int] | None = None, actor: str | None = None,
                   now: datetime | None = None) -> list[int]:
    """Open an incident for every threshold crossed on these days that has not opened one yet; their ids.
    Where the window's incident is already open, the offending records of `batch` (batch id, its
    evidence record) are added to it instead: linked, with their requests, and a note."""
    from tunesafe.production.incidents import open_incident

    check_kinds(policy.kind, where="policy monitor.kind")
    opened = []
    # with the windows claimed but left without their incident (an ingest killed while opening it):
    # checked again by every ingest of the model, so one goes stale while traffic of any day comes in
    for stats in daily(store, model=model, days={*days, *_pending_days(store, model)}):
        for crossing in crossings(stats, policy):
            if not _claim(store, model, stats.day, crossing.rule):
                if batch is not None:
                    _add_to_open(store, model, stats.day, crossing.rule, batch, actor, now)
                continue
            try:
                records = offending(store, model, stats.day, crossing.rule)
                incident = open_incident(
                    store, model=model, title=f"monitor: {crossing.title}", severity=policy.severity,
                    source="monitor", kind=policy.kind, evidence=_batch_records(store, model, records),
                    conversations=_requests(records), actor=actor, now=now,
                    details={"rule": crossing.rule, "day": stats.day, "value": crossing.value,
                             "limit": crossing.limit, "stats": stats.as_dict(),
                             "records": [_where(r) for r in records]})
            except BaseException:
                _release(store, model, stats.day, crossing.rule)
                raise
            with store.engine.begin() as conn:
                conn.execute(update(MonitorAlertRow).where(*_key(model, stats.day, crossing.rule))
                             .values(incident_id=incident.id))
            opened.append(incident.id)
    return opened


def _add_to_open(store: Store, model: str, day: str, rule: str, batch: tuple[str, int], actor: str | None,
                 now: datetime | None) -> None:
    from tunesafe.production.incidents import get_incident, update_incident

    with store.engine.connect() as conn:
        found = conn.execute(select(MonitorAlertRow.incident_id).where(*_key(model, day, rule)))
        incident_id = found.scalar()
    records = offending(store, model, day, rule, batch=batch[0])
    if incident_id is None or not records:  # still being opened by another ingest, or nothing new here
        return
    incident = get_incident(store, incident_id)
    if incident.status == "closed":  # its window stays claimed: a closed incident is not reopened
        return
    room = max(0, CONVERSATIONS - len(incident.conversations))
    try:
        update_incident(store, incident_id, links=[batch[1]], conversations=_requests(records)[:room],
                        note=f"{len(records)} more offending record(s) ({rule}) in monitor_ingest record "
                             f"{batch[1]}",
                        actor=actor, now=now)
    except UserError:
        if get_incident(store, incident_id).status != "closed":
            raise  # else closed by another process since it was read: left closed, as above


def _key(model: str, day: str, rule: str) -> tuple[Any, ...]:
    return (MonitorAlertRow.model == model, MonitorAlertRow.day == day, MonitorAlertRow.rule == rule)


def _claim(store: Store, model: str, day: str, rule: str) -> bool:
    """Claim the window; False when another ingest has it. A claim that never got its incident id (its
    ingest was killed while opening it, with no chance to release it) is taken over once stale, unless
    that incident was recorded after all."""
    # the wall clock, as in tunesafe.production.claims: an ingest's `now` may be a time given for its records
    wall = utcnow()
    with store.engine.begin() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = (dialect.insert(MonitorAlertRow).values(model=model, day=day, rule=rule, opened_at=wall)
                .on_conflict_do_nothing().returning(MonitorAlertRow.rule))
        if conn.execute(stmt).first() is not None:
            return True
        taken = conn.execute(update(MonitorAlertRow)
                             .where(*_key(model, day, rule), MonitorAlertRow.incident_id.is_(None),
                                    MonitorAlertRow.opened_at < wall - STALE_CLAIM)
                             .values(opened_at=wall).returning(MonitorAlertRow.rule)).first()
    if taken is None:
        return False
    recorded = _recorded_incident(store, model, day, rule)
    if recorded is None:
        return True
    with store.engine.begin() as conn:
        conn.execute(update(MonitorAlertRow).where(*_key(model, day, rule)).values(incident_id=recorded))
    return False


def _pending_days(store: Store, model: str) -> set[str]:
    with store.engine.connect() as conn:
        found = conn.execute(select(MonitorAlertRow.day).where(MonitorAlertRow.model == model,
                                                               MonitorAlertRow.incident_id.is_(None)))
        return {row[0] for row in found}


def _recorded_incident(store: Store, model: str, day: str, rule: str) -> int | None:
    for rec in store.records(type=RecordType.INCIDENT, subject=model):
        details = rec.body.get("details") or {}
        if rec.body.get("source") == "monitor" and details.get("day") == day and details.get("rule") == rule:
            return rec.id
    return None


def _release(store: Store, model: str, day: str, rule: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(MonitorAlertRow).where(*_key(model, day, rule)))


def _batch_records(store: Store, model: str, records: Sequence[Mapping[str, Any]]) -> list[int]:
    """The MONITOR_INGEST evidence records of the batches that stored these records."""
    batches = {r["batch"] for r in records}
    return [rec.id for rec in store.records(type=RecordType.MONITOR_INGEST, subject=model)
            if rec.body.get("batch") in batches]


def _requests(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The request side of the offending conversations that end with a user turn (what the incident's
    regression suite can replay)."""
    out = []
    for record in records:
        conversation = record.get("conversation") or {}
        messages = list(conversation.get("messages", ()))
        while messages and messages[-1].get("role") == "assistant":  # a prefill, not part of the request
            messages.pop()
        if messages and messages[-1].get("role") == "user" and str(messages[-1].get("content", "")).strip():
            item: dict[str, Any] = {"messages": messages}
            if record.get("category"):
                item["category"] = record["category"]
            out.append(item)
        if len(out) == CONVERSATIONS:
            break
    return out


def _where(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"record_hash": record["record_hash"], "line": record["line"], "at": record["at"],
            "jailbreak": record["jailbreak"], "category": record["category"]}

