"""Claims: which runner runs a red-team schedule's period, so that two runners started together (two cron
hosts, a Kubernetes CronJob that fired twice) never run it twice.

A claim is one row of `redteam_claims`, keyed by (schedule id, period start). Taking it is one atomic
statement in its own short transaction, on SQLite and PostgreSQL alike:

- the first claim of a period is `INSERT ... ON CONFLICT DO NOTHING`: of two runners inserting the same
  key, the database lets exactly one row in (PostgreSQL makes the second wait on the first's
  uncommitted row, then skip; SQLite serializes writers with BEGIN IMMEDIATE, see evidence/database.py);
- a period whose runner died (lease expired) or whose run failed is taken over by
  `UPDATE ... WHERE state = 'failed' OR (state = 'running' AND lease_until < now) RETURNING`: the WHERE
  is re-checked on the row after any concurrent update commits, so only one runner's UPDATE matches.

The claim is committed before the evaluation starts (a run takes minutes to hours; no transaction or
lock is held meanwhile). The holder renews its lease while it runs; every later write checks `owner`,
so a runner whose lease lapsed and was taken over cannot overwrite the new holder's state.

Leases use the wall clock of the runners (and of nothing else): hosts running run-due need roughly
synchronized clocks, which NTP gives; a skew far below the lease length is harmless.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tunesafe.evidence.schema import RedteamClaimRow
from tunesafe.evidence.store import Store

__all__ = ["Claim", "claim", "claim_states", "finish", "holds", "new_owner", "renew", "set_run"]

_T = RedteamClaimRow


@dataclass(frozen=True)
class Claim:
    schedule_id: str
    period: str
    owner: str
    attempts: int  # 1 for the first claim of the period, more after takeovers
    run_id: str | None  # the run an earlier holder started: resumed, not started again


@dataclass(frozen=True)
class ClaimState:
    state: str
    owner: str
    lease_until: datetime
    attempts: int
    run_id: str | None
    record_id: int | None
    error: str | None


def new_owner() -> str:
    """A name unique to this runner: host and pid for people reading the table, a nonce for uniqueness."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim(store: Store, schedule_id: str, period: str, owner: str, lease: timedelta) -> Claim | None:
    """Claim a period for `owner`, or None when another runner holds it (or finished it)."""
    now = _now()
    values = {"schedule_id": schedule_id, "period": period, "owner": owner, "state": "running", "attempts": 1,
              "claimed_at": now, "lease_until": now + lease}
    with store.engine.begin() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING
        inserted = conn.execute(dialect.insert(_T).values(**values).on_conflict_do_nothing(
            index_elements=["schedule_id", "period"]).returning(_T.schedule_id)).first()
        if inserted is not None:
            return Claim(schedule_id, period, owner, 1, None)
        taken = conn.execute(
            update(_T).where(_key(schedule_id, period),
                             or_(_T.state == "failed", and_(_T.state == "running", _T.lease_until < now)))
            .values(owner=owner, state="running", attempts=_T.attempts + 1, claimed_at=now,
                    lease_until=now + lease, error=None)
            .returning(_T.attempts, _T.run_id)).first()
    return None if taken is None else Claim(schedule_id, period, owner, taken.attempts, taken.run_id)


def renew(store: Store, held: Claim, lease: timedelta) -> bool:
    """Extend the lease; False when the claim is no longer ours (it lapsed and another runner took it)."""
    return _owned_update(store, held, lease_until=_now() + lease)


def set_run(store: Store, held: Claim, run_id: str) -> bool:
    """Note the run this claim started, so that a takeover after a crash resumes it."""
    return _owned_update(store, held, run_id=run_id)


def finish(store: Store, held: Claim, *, record_id: int | None = None, error: str | None = None) -> bool:
    """Close the claim: done (with its redteam_run record) or, with `error`, failed (the next run-due
    takes it over and resumes the run)."""
    state = "failed" if error is not None else "done"
    return _owned_update(store, held, state=state, finished_at=_now(), record_id=record_id,
                         error=None if error is None else error[:2000])


def holds(store: Store, held: Claim) -> bool:
    """Whether `held` is still this runner's running claim (a lapsed lease nobody took over still is):
    read under the chain lock before recording the period, so a runner whose claim was taken over while
    it was frozen cannot record the period too."""
    with store.engine.connect() as conn:
        conn = conn.execution_options(sqlite_read=True)
        with conn.begin():
            row = conn.execute(select(_T.owner).where(_key(held.schedule_id, held.period),
                                                     _T.state == "running")).first()
    return row is not None and row.owner == held.owner


def claim_states(store: Store) -> dict[tuple[str, str], ClaimState]:
    """Every claim by (schedule id, period)."""
    with store.engine.connect() as conn:
        conn = conn.execution_options(sqlite_read=True)
        with conn.begin():
            rows = conn.execute(select(
                _T.schedule_id, _T.period, _T.state, _T.owner, _T.lease_until, _T.attempts, _T.run_id,
                _T.record_id, _T.error)).all()
    return {(r.schedule_id, r.period): ClaimState(r.state, r.owner, _utc(r.lease_until), r.attempts, r.run_id,
                                                  r.record_id, r.error) for r in rows}


def is_live(state: ClaimState, now: datetime | None = None) -> bool:
    """Whether a claim still stands: finished, or running within its lease."""
    return state.state == "done" or (state.state == "running" and state.lease_until >= (now or _now()))


def _owned_update(store: Store, held: Claim, **values: object) -> bool:
    with store.engine.begin() as conn:
        result = conn.execute(update(_T).where(_key(held.schedule_id, held.period), _T.owner == held.owner,
                                               _T.state == "running").values(**values))
    return result.rowcount == 1


def _key(schedule_id: str, period: str):  # type: ignore[no-untyped-def]
    return and_(_T.schedule_id == schedule_id, _T.period == period)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything written here is UTC.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
