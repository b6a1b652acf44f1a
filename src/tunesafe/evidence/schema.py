"""The store's tables (SQLAlchemy 2). Alembic migrations in tunesafe/evidence/migrations are the source
of truth for the database; these models must match them (a test checks that autogenerate finds no diff).

- records: the append-only, hash-chained evidence log (one chain per workspace).
- chain_head: one row holding the chain's last id/hash; appends lock it so two writers never fork.
- runs / attempt_results: evaluation results written as each attempt completes (high volume, so kept
  out of the chain; a run's final evidence record carries a digest over its attempt rows).
- attempt_result_history: results a retry replaced (eval --retry-errors), kept as history.
- response_cache: generations keyed by (model content hash, request, decoding params).
- redteam_claims: which runner claimed a red-team schedule's period, and its lease (production/schedules).
- monitor_records / monitor_sources / monitor_alerts: live-traffic monitoring (production/monitor*): one
  compact row per log record, read offsets per file, and the incident each threshold opened per day.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RecordRow(Base):
    __tablename__ = "records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    body: Mapped[str] = mapped_column(Text)  # canonical JSON, exactly the bytes that were hashed
    created_at: Mapped[str] = mapped_column(String(40))  # ISO-8601 UTC, part of the hashed envelope
    actor: Mapped[str] = mapped_column(String(200))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str | None] = mapped_column(String(200), index=True, nullable=True)  # e.g. model name


class ChainHead(Base):
    __tablename__ = "chain_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_ref: Mapped[str] = mapped_column(String(500))
    model_hash: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict] = mapped_column(JSON)  # suite/attacks/judges versions, decoding, seed, tool version
    config_hash: Mapped[str] = mapped_column(String(64), index=True)  # for reuse by the gate
    status: Mapped[str] = mapped_column(String(20))  # running | complete | failed
    n_planned: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # model id -> replies that named it, over every session that ran the run (None: none counted yet)
    reported_models: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class AttemptResultRow(Base):
    __tablename__ = "attempt_results"
    __table_args__ = (UniqueConstraint("run_id", "attempt_id"),)
    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    attempt_id: Mapped[str] = mapped_column(String(40))
    behavior_id: Mapped[str] = mapped_column(String(120))
    attack: Mapped[str] = mapped_column(String(120))
    family: Mapped[str] = mapped_column(String(80))
    category: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[dict] = mapped_column(JSON)  # messages (all turns), prefill, params
    generation: Mapped[dict] = mapped_column(JSON)  # text, finish reason, tokens, latency, error
    verdicts: Mapped[list] = mapped_column(JSON)  # one per judge
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)


class AttemptResultHistoryRow(Base):
    """An attempt_results row replaced by a later execution of the same attempt (eval --retry-errors):
    kept whole in `result` as history, never counted."""

    __tablename__ = "attempt_result_history"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    attempt_id: Mapped[str] = mapped_column(String(40))
    result: Mapped[dict] = mapped_column(JSON)  # the replaced row, column by column
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    retired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ResponseCacheRow(Base):
    __tablename__ = "response_cache"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_hash: Mapped[str] = mapped_column(String(64), index=True)
    generation: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RedteamClaimRow(Base):
    __tablename__ = "redteam_claims"
    schedule_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    period: Mapped[str] = mapped_column(String(40), primary_key=True)  # ISO-8601 UTC start of the period
    owner: Mapped[str] = mapped_column(String(200))  # host:pid:nonce of the runner holding the claim
    state: Mapped[str] = mapped_column(String(20))  # running | done | failed
    attempts: Mapped[int] = mapped_column(Integer)  # claims taken (1 + takeovers of expired/failed ones)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    record_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the redteam_run record
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class MonitorRecordRow(Base):
    __tablename__ = "monitor_records"
    __table_args__ = (Index("ix_monitor_records_model_day", "model", "day"),)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)  # the inventory name given to ingest
    record_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # of the log record's content
    day: Mapped[str] = mapped_column(String(10))  # UTC date of the record: the aggregation window
    at: Mapped[str] = mapped_column(String(40))  # ISO-8601 UTC time of the record
    source: Mapped[str] = mapped_column(String(64))  # digest of the file (or "stdin")
    line: Mapped[int] = mapped_column(Integer)
    batch: Mapped[str] = mapped_column(String(40), index=True)  # the ingest batch (its evidence record)
    status: Mapped[str] = mapped_column(String(16))  # judged | blocked | error | sampled_out
    refused: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    harmful: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # harmful completion
    request_harmful: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None: not needed
    jailbreak: Mapped[str | None] = mapped_column(String(120), nullable=True)  # detector:family/attack
    category: Mapped[str | None] = mapped_column(String(80), nullable=True)
    conversation: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # flagged records only


class MonitorSourceRow(Base):
    __tablename__ = "monitor_sources"
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    path: Mapped[str] = mapped_column(String(1000), primary_key=True)  # resolved path of the file
    head_len: Mapped[int] = mapped_column(Integer)  # how many first bytes head_sha256 covers
    head_sha256: Mapped[str] = mapped_column(String(64))  # same file (not rotated/replaced) iff equal
    offset: Mapped[int] = mapped_column(BigInteger)  # bytes read: the next ingest starts here
    line: Mapped[int] = mapped_column(Integer)  # lines read (line numbers continue from here)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MonitorAlertRow(Base):
    __tablename__ = "monitor_alerts"
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    rule: Mapped[str] = mapped_column(String(40), primary_key=True)  # the policy threshold crossed
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
