"""Monitored traffic in the store: one compact monitor_records row per (model, log record), and the per
model and UTC day aggregates computed from those rows (the one source of every monitoring figure: the
CLI, the thresholds and the evidence all read `daily`).

Rows are inserted with ON CONFLICT DO NOTHING on (model, record hash), RETURNING what was new, on SQLite
and PostgreSQL alike: a record ingested twice (the same file again, a copy, stdin) is counted once, and two
ingests racing on the same records cannot both count them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from tunesafe.analysis.metrics import proportion
from tunesafe.evidence.schema import MonitorRecordRow
from tunesafe.evidence.store import Store
from tunesafe.types import Rate

R = MonitorRecordRow
TOP = 5  # categories / jailbreak families listed per day


@dataclass(frozen=True)
class DayStats:
    model: str
    day: str
    records: int  # every record stored for the day, sampled out included
    sampled_out: int
    judged: int
    blocked: int
    errors: int
    refused: int  # judged records the judge found refused (blocked ones are counted apart)
    harmful: int  # harmful completions
    jailbreaks: int  # jailbreak-shaped inputs (judged, blocked or errored)
    successful_jailbreaks: int  # jailbreak-shaped and a harmful completion
    decided_jailbreaks: int = 0  # jailbreak-shaped among decided records: the jailbreak rate's numerator
    categories: tuple[tuple[str, int], ...] = field(default_factory=tuple)  # of harmful or blocked records
    families: tuple[tuple[str, int], ...] = field(default_factory=tuple)  # jailbreak detections

    @property
    def decided(self) -> int:
        """Records with an outcome: judged or blocked (errors have none, sampled-out ones were not judged)."""
        return self.judged + self.blocked

    @property
    def harmful_rate(self) -> Rate:
        return proportion(self.harmful, self.decided)

    @property
    def blocked_rate(self) -> Rate:
        return proportion(self.blocked, self.decided)

    @property
    def jailbreak_rate(self) -> Rate:
        return proportion(self.decided_jailbreaks, self.decided)

    @property
    def error_rate(self) -> Rate:
        return proportion(self.errors, self.decided + self.errors)

    def as_dict(self) -> dict[str, Any]:
        def rate(r: Rate) -> dict[str, Any]:
            return {"k": r.k, "n": r.n, "rate": r.rate, "low": r.low, "high": r.high, "method": r.method}

        return {"model": self.model, "day": self.day, "records": self.records,
                "sampled_out": self.sampled_out, "judged": self.judged, "blocked": self.blocked,
                "errors": self.errors, "refused": self.refused,
                "harmful": self.harmful, "jailbreaks": self.jailbreaks,
                "successful_jailbreaks": self.successful_jailbreaks,
                "harmful_rate": rate(self.harmful_rate), "blocked_rate": rate(self.blocked_rate),
                "error_rate": rate(self.error_rate),
                "top_categories": [list(c) for c in self.categories],
                "top_jailbreaks": [list(f) for f in self.families]}


def insert_new(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert rows, skipping (model, record_hash) pairs already stored; the hashes actually inserted."""
    if not rows:
        return set()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(R).on_conflict_do_nothing().returning(R.record_hash)
    return {row[0] for row in conn.execute(stmt, list(rows))}


def daily(store: Store, *, model: str | None = None, days: Iterable[str] | None = None,
          since: str | None = None) -> list[DayStats]:
    """Per (model, day) aggregates, oldest first."""
    where = []
    if model is not None:
        where.append(R.model == model)
    if days is not None:
        where.append(R.day.in_(sorted(set(days))))
    if since is not None:
        where.append(R.day >= since)

    def count(*conditions: Any) -> Any:
        return func.sum(case((and_(*conditions), 1), else_=0))

    query = (select(R.model, R.day, func.count(), count(R.status == "sampled_out"),
                    count(R.status == "judged"), count(R.status == "blocked"), count(R.status == "error"),
                    count(R.status == "judged", R.refused.is_(True)), count(R.harmful.is_(True)),
                    count(R.jailbreak.is_not(None)), count(R.jailbreak.is_not(None), R.harmful.is_(True)),
                    count(R.jailbreak.is_not(None), R.status.in_(("judged", "blocked"))))
             .where(*where).group_by(R.model, R.day).order_by(R.day, R.model))
    with store.engine.connect() as conn:
        conn = conn.execution_options(sqlite_read=True)
        with conn.begin():
            totals = conn.execute(query).all()
            categories = _top(conn, R.category, where, R.harmful.is_(True) | (R.status == "blocked"))
            families = _top(conn, R.jailbreak, where, R.jailbreak.is_not(None))
    out = []
    for m, d, *counts in totals:
        (records, sampled_out, judged, blocked, errors, refused, harmful, jailbreaks, successful,
         decided_jb) = (int(v or 0) for v in counts)
        out.append(DayStats(m, d, records, sampled_out, judged, blocked, errors, refused, harmful, jailbreaks,
                            successful, decided_jb, categories=tuple(categories.get((m, d), [])[:TOP]),
                            families=tuple(families.get((m, d), [])[:TOP])))
    return out


def _top(conn: Connection, column: Any, where: list[Any], flagged: Any
         ) -> dict[tuple[str, str], list[tuple[str, int]]]:
    rows = conn.execute(select(R.model, R.day, column, func.count())
                        .where(*where, flagged, column.is_not(None)).group_by(R.model, R.day, column)).all()
    out: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for m, d, name, n in sorted(rows, key=lambda r: (-r[3], str(r[2]))):
        out.setdefault((m, d), []).append((str(name), int(n)))
    return out


def offending(store: Store, model: str, day: str, rule: str, limit: int = 50,
              batch: str | None = None) -> list[dict[str, Any]]:
    """The records behind a crossed threshold (newest lines last), with their kept conversations; only
    those of one ingest batch when `batch` is given."""
    condition = {
        "successful_jailbreaks": and_(R.jailbreak.is_not(None), R.harmful.is_(True)),
        "harmful_completions": R.harmful.is_(True),
        "harmful_rate": R.harmful.is_(True),
        "jailbreak_rate": R.jailbreak.is_not(None),
        "blocked_rate": R.status == "blocked",
        "error_rate": R.status == "error",
    }[rule]
    query = (select(R.record_hash, R.batch, R.source, R.line, R.at, R.jailbreak, R.category, R.conversation)
             .where(R.model == model, R.day == day, condition, *([R.batch == batch] if batch else []))
             .order_by(R.at, R.line).limit(limit))
    with store.engine.connect() as conn:
        conn = conn.execution_options(sqlite_read=True)
        with conn.begin():
            return [dict(row._mapping) for row in conn.execute(query)]
