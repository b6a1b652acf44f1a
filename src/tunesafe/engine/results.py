"""Runs and their attempt results in the store: create a run, write each result as it completes (in
small batches), read runs and results back, and the digest that ties a run's rows to the evidence chain.

Rows are keyed by (run_id, attempt_id) and inserted with "on conflict do nothing", so a resumed run (or
two processes resuming the same run) can never store an attempt twice. A row is written only once the
attempt is complete, so after a kill -9 every stored row is whole and the missing ones are re-run.

Retrying errored attempts (`retire_errors`) moves their rows to attempt_result_history in the same
transaction that frees them: attempt_results always holds the newest result of each attempt (the one
every reader counts) and the earlier ones stay in the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Executable, Table, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from tunesafe.errors import UserError
from tunesafe.evidence import database
from tunesafe.evidence.schema import (
    AttemptResultHistoryRow,
    AttemptResultRow,
    RecordRow,
    ResponseCacheRow,
    RunRow,
)
from tunesafe.evidence.store import Store
from tunesafe.models.reasoning import settle_reasoning
from tunesafe.models.refs import redact_ref
from tunesafe.types import (
    Attempt,
    AttemptResult,
    Generation,
    Message,
    RecordType,
    Verdict,
    canonical_json,
    messages_from_dicts,
    sha256_hex,
)

FLUSH_ROWS = 64
FLUSH_SECONDS = 0.5


@dataclass(frozen=True)
class RunInfo:
    id: str
    model_ref: str
    model_hash: str
    config: Mapping[str, Any]
    config_hash: str
    status: str  # running | interrupted | complete | failed
    n_planned: int
    n_done: int
    n_errors: int
    created_at: datetime
    finished_at: datetime | None

    @property
    def model_name(self) -> str | None:
        name: str | None = self.config.get("model_name")
        return name

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["created_at"] = self.created_at.isoformat()
        body["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return body


def now() -> datetime:
    return datetime.now(timezone.utc)


def read(store: Store, query: Executable) -> list[Any]:
    """A read that does not take SQLite's write lock (the engine opts reads out of BEGIN IMMEDIATE).
    A database that fails (a table gone, a server down) or a JSON column that does not parse (edited
    outside tunesafe) is a UserError naming the store, not a traceback."""
    try:
        with store.engine.connect() as conn:
            conn = conn.execution_options(sqlite_read=True)
            with conn.begin():
                return list(conn.execute(query).all())
    except DBAPIError as exc:
        raise database.connect_error(store.url, exc) from exc
    except json.JSONDecodeError as exc:
        raise damaged("a run or result row holds a column that is not JSON", store) from exc


def damaged(what: str, store: Store) -> UserError:
    return UserError(f"{what} (edited outside tunesafe)", where=store.location,
                     fix="restore the database from a backup")


def create_run(store: Store, run_id: str, model_ref: str, model_hash: str, config: Mapping[str, Any],
               config_hash: str, n_planned: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(RunRow).values(
            id=run_id, model_ref=redact_ref(model_ref), model_hash=model_hash, config=dict(config),
            config_hash=config_hash, status="running", n_planned=n_planned, created_at=now(),
            finished_at=None))


def move_run(store: Store, run_id: str, model_ref: str, model_hash: str) -> None:
    """The run goes on at `model_ref` (replicas serving its model elsewhere): later resumes without MODEL
    go there. The ref and hash it leaves are appended to its config's `moved_from` (unhashed provenance)."""
    with store.engine.begin() as conn:
        query = select(RunRow.model_ref, RunRow.model_hash, RunRow.config).where(RunRow.id == run_id)
        row = conn.execute(query.with_for_update()).one()
        config = dict(row.config)
        config["moved_from"] = [*config.get("moved_from", ()),
                                {"model_ref": row.model_ref, "model_hash": row.model_hash}]
        conn.execute(update(RunRow).where(RunRow.id == run_id).values(
            model_ref=redact_ref(model_ref), model_hash=model_hash, config=config))


def set_status(store: Store, run_id: str, status: str, finished_at: datetime | None = None) -> None:
    finished = (finished_at or now()) if status == "complete" else None
    with store.engine.begin() as conn:
        conn.execute(update(RunRow).where(RunRow.id == run_id).values(status=status, finished_at=finished))


def _insert_ignoring_duplicates(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), list(rows))
    elif dialect == "postgresql":
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), list(rows))
    else:  # other databases: the unique constraint still rejects a duplicate, loudly
        conn.execute(table.insert(), list(rows))


def _messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _jsonable(value: Mapping[str, Any]) -> Any:
    """A free-form mapping (params, frozen prompts, judge evidence) as plain JSON values."""
    return json.loads(canonical_json(dict(value))) if value else {}


def result_row(result: AttemptResult) -> dict[str, Any]:
    # Built field by field rather than with dataclasses.asdict: this runs once per attempt on the hot
    # path and asdict deep-copies every value.
    attempt = result.attempt
    generation = result.generation
    errors = [generation.error] if generation.error else []
    errors += [f"judge {v.judge}: {v.error}" for v in result.verdicts if v.error]
    return {
        "run_id": result.run_id,
        "attempt_id": attempt.id,
        "behavior_id": attempt.behavior_id,
        "attack": attempt.attack,
        "family": attempt.family,
        "category": attempt.category,
        "kind": attempt.kind,
        # The attempt as planned plus what happened to it: every turn, the judged text, replay data.
        "attempt": {
            **{f: getattr(attempt, f) for f in _ATTEMPT_SCALARS}, "messages": _messages(attempt.messages),
            "params": _jsonable(attempt.params), "conversation": _messages(result.conversation),
            "response": result.response, "frozen": _jsonable(result.frozen),
        },
        "generation": _generation(generation),
        "verdicts": [{**{f: getattr(v, f) for f in _VERDICT_SCALARS}, "evidence": _jsonable(v.evidence)}
                     for v in result.verdicts],
        "error": "; ".join(errors) or None,
        "latency_s": generation.latency_s,
    }


def _generation(generation: Generation) -> dict[str, Any]:
    # `reasoning` only where there is one: rows stored before the field existed (and every answer of a
    # model that does not reason) keep the exact JSON, so their results_digest does not move.
    row = {f: getattr(generation, f) for f in _GENERATION_FIELDS}
    if row["reasoning"] is None:
        del row["reasoning"]
    return row


_ATTEMPT_SCALARS = tuple(f.name for f in fields(Attempt) if f.name not in ("messages", "params"))
_GENERATION_FIELDS = tuple(f.name for f in fields(Generation))
_VERDICT_SCALARS = tuple(f.name for f in fields(Verdict) if f.name != "evidence")


def result_from_row(run_id: str, attempt: Mapping[str, Any], generation: Mapping[str, Any],
                    verdicts: Sequence[Mapping[str, Any]]) -> AttemptResult:
    data = dict(attempt)
    conversation = messages_from_dicts(data.pop("conversation", []))
    response = str(data.pop("response", ""))
    frozen = data.pop("frozen", {})
    record = Attempt(**{**data, "messages": messages_from_dicts(data["messages"])})
    return AttemptResult(run_id=run_id, attempt=record, generation=Generation(**generation),
                         response=response, conversation=conversation,
                         verdicts=tuple(Verdict(**v) for v in verdicts), frozen=frozen)


class ResultWriter:
    """Buffers completed results (and new cache entries) and commits them together every FLUSH_ROWS rows
    or FLUSH_SECONDS, whichever comes first: one transaction per batch keeps SQLite well above 100
    attempts/s while a kill loses at most one batch of work (re-run on resume, never half-stored)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._results: list[dict[str, Any]] = []
        self._cache: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self.written = 0

    def add(self, result: AttemptResult) -> None:
        self._results.append(result_row(result))
        self._maybe_flush()

    def add_cache(self, key: str, model_hash: str, generation: Generation) -> None:
        self._cache.append({"key": key, "model_hash": model_hash, "generation": asdict(generation),
                            "created_at": now()})
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if len(self._results) + len(self._cache) >= FLUSH_ROWS or \
                time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        results, cache = self._results, self._cache
        self._results, self._cache = [], []
        self._last_flush = time.monotonic()
        if not results and not cache:
            return
        with self.store.engine.begin() as conn:
            _insert_ignoring_duplicates(conn, ResponseCacheRow.__table__, cache)  # type: ignore[arg-type]
            _insert_ignoring_duplicates(conn, AttemptResultRow.__table__, results)  # type: ignore[arg-type]
        self.written += len(results)


def cache_keys(store: Store, model_hash: str) -> set[str]:
    query = select(ResponseCacheRow.key).where(ResponseCacheRow.model_hash == model_hash)
    return {k for (k,) in read(store, query)}


def cached_generations(store: Store, keys: Sequence[str]) -> dict[str, Generation]:
    if not keys:
        return {}
    rows = read(store, select(ResponseCacheRow.key, ResponseCacheRow.generation)
                .where(ResponseCacheRow.key.in_(list(keys))))
    # Entries cached before reasoning was split off hold the raw text: settle them as a backend would now
    return {key: settle_reasoning(Generation(**{**gen, "cached": True})) for key, gen in rows}


def _run_row(store: Store, run_id: str) -> Any:
    rows = read(store, select(RunRow.__table__).where(RunRow.id == run_id))
    if not rows:
        raise UserError(f"no run '{run_id}' in this store", where=store.location,
                        fix="list runs with `tunesafe runs list`")
    return rows[0]


def _counts(store: Store, run_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """run id -> (attempts stored, attempts with an error)."""
    query = (select(AttemptResultRow.run_id, func.count(), func.count(AttemptResultRow.error))
             .where(AttemptResultRow.run_id.in_(list(run_ids))).group_by(AttemptResultRow.run_id))
    return {run_id: (int(n), int(e or 0)) for run_id, n, e in read(store, query)}


def _info(store: Store, row: Any, counts: Mapping[str, tuple[int, int]]) -> RunInfo:
    if not isinstance(row.config, Mapping):  # create_run stores a mapping, always
        raise damaged(f"run {row.id} holds a config that is not a JSON object", store)
    done, errors = counts.get(row.id, (0, 0))
    return RunInfo(id=row.id, model_ref=row.model_ref, model_hash=row.model_hash, config=row.config,
                   config_hash=row.config_hash, status=row.status, n_planned=row.n_planned, n_done=done,
                   n_errors=errors, created_at=row.created_at, finished_at=row.finished_at)


def load_run(store: Store, run_id: str) -> RunInfo:
    return _info(store, _run_row(store, run_id), _counts(store, [run_id]))


def list_runs(store: Store) -> list[RunInfo]:
    rows = read(store, select(RunRow.__table__).order_by(RunRow.created_at, RunRow.id))
    counts = _counts(store, [r.id for r in rows])
    return [_info(store, r, counts) for r in rows]


def run_ids(store: Store, model: str | None = None) -> list[str]:
    """Run ids, newest first; with `model`, only the runs recorded under that model name (the config's
    `model_name`, as `RunInfo.model_name`). Reads ids and configs only: no attempt is counted here."""
    newest = (RunRow.created_at.desc(), RunRow.id.desc())
    if model is None:
        return [run_id for (run_id,) in read(store, select(RunRow.id).order_by(*newest))]
    rows = read(store, select(RunRow.id, RunRow.config).order_by(*newest))
    return [run_id for run_id, config in rows
            if isinstance(config, Mapping) and config.get("model_name") == model]


def load_runs(store: Store, ids: Sequence[str]) -> list[RunInfo]:
    """The runs `ids`, in that order, with their attempts counted (only theirs: a page of a long list)."""
    rows = {r.id: r for r in read(store, select(RunRow.__table__).where(RunRow.id.in_(list(ids))))}
    counts = _counts(store, list(rows))
    return [_info(store, rows[run_id], counts) for run_id in ids if run_id in rows]


def newest_run_record_id(store: Store, run_id: str, confirmed: int | None = None) -> int | None:
    """The id of the newest RUN evidence record of a run. Bodies are canonical JSON, so the run id
    appears in exactly this form; the match is confirmed on the parsed body (unless it is `confirmed`,
    a record already known to be this run's)."""
    needle = f'"run_id":{json.dumps(run_id, ensure_ascii=False)}'
    query = (
        select(RecordRow.id)
        .where(RecordRow.type == RecordType.RUN, RecordRow.body.contains(needle))
        .order_by(RecordRow.id.desc())
    )
    for (record_id,) in read(store, query):
        if record_id == confirmed or store.get(record_id).body.get("run_id") == run_id:
            return int(record_id)
    return None


def reported_models(store: Store, run_id: str) -> dict[str, int]:
    """The model ids an HTTP server's replies named while the run ran, with their counts, from its newest
    evidence record: over every session (records written before that was kept hold the closing session's
    only); empty when unknown: a local model, a run stored before they were counted, answers all cached."""
    record_id = newest_run_record_id(store, run_id)
    if record_id is None:
        return {}
    body = store.get(record_id).body
    reported = body.get("reported_models") or (body.get("session") or {}).get("reported_models") or {}
    return {str(k): int(v) for k, v in reported.items()}


def add_reported_models(store: Store, run_id: str, reported: Mapping[str, int]) -> dict[str, int]:
    """Add one session's reported model ids to the run's; returns the run's, over every session so far.
    Read and written in one transaction, so two sessions ending together both count."""
    with store.engine.begin() as conn:
        query = select(RunRow.reported_models).where(RunRow.id == run_id).with_for_update()
        row = conn.execute(query).first()
        total = {str(k): int(v) for k, v in ((row[0] if row else None) or {}).items()}
        for model, count in reported.items():
            total[model] = total.get(model, 0) + count
        if reported:
            conn.execute(update(RunRow).where(RunRow.id == run_id).values(reported_models=total))
    return total


def done_attempt_ids(store: Store, run_id: str) -> set[str]:
    return {i for (i,) in read(store, select(AttemptResultRow.attempt_id)
                                 .where(AttemptResultRow.run_id == run_id))}


def load_results(store: Store, run_id: str) -> list[AttemptResult]:
    """The run's results in attempt-id order (the order the digest uses)."""
    _run_row(store, run_id)
    columns = (AttemptResultRow.attempt, AttemptResultRow.generation, AttemptResultRow.verdicts)
    query = select(*columns).where(AttemptResultRow.run_id == run_id).order_by(AttemptResultRow.attempt_id)
    return [_stored_result(store, run_id, a, g, v) for a, g, v in read(store, query)]


def retire_errors(store: Store, run_id: str) -> int:
    """Move the run's errored results to the history so those attempts run again; returns how many."""
    table = AttemptResultRow.__table__
    with store.engine.begin() as conn:
        rows = conn.execute(select(table).where(AttemptResultRow.run_id == run_id,
                                                AttemptResultRow.error.is_not(None))).mappings().all()
        if rows:
            retired = now()
            conn.execute(insert(AttemptResultHistoryRow), [
                {"run_id": run_id, "attempt_id": r["attempt_id"], "error": r["error"], "retired_at": retired,
                 "result": {k: v for k, v in r.items() if k != "pk"}} for r in rows])
            conn.execute(delete(AttemptResultRow).where(AttemptResultRow.pk.in_([r["pk"] for r in rows])))
    return len(rows)


def load_history(store: Store, run_id: str) -> list[tuple[AttemptResult, datetime]]:
    """The run's replaced results, oldest first, each with when it was replaced."""
    query = (select(AttemptResultHistoryRow.result, AttemptResultHistoryRow.retired_at)
             .where(AttemptResultHistoryRow.run_id == run_id).order_by(AttemptResultHistoryRow.pk))
    return [(_stored_result(store, run_id, row["attempt"], row["generation"], row["verdicts"]), retired)
            for row, retired in read(store, query)]


def _stored_result(store: Store, run_id: str, attempt: Any, generation: Any, verdicts: Any) -> AttemptResult:
    try:
        return result_from_row(run_id, attempt, generation, verdicts)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:  # only tunesafe writes these rows
        shown = attempt.get("id") if isinstance(attempt, Mapping) else None
        raise damaged(f"run {run_id}: the stored result of attempt {shown} does not read back "
                      f"({type(exc).__name__}: {exc})", store) from exc


def frozen_prompts(store: Store, run_id: str) -> dict[str, Mapping[str, Any]]:
    """attempt id -> the attacker prompts frozen by that run, for replay on another model."""
    return {r.attempt.id: r.frozen for r in load_results(store, run_id) if r.frozen}


def results_digest(results: Iterable[AttemptResult]) -> str:
    """sha256 over the run's results as stored, one canonical line per attempt, sorted by attempt id.
    The run's evidence record carries it, so editing any stored result is detectable."""
    rows = sorted((result_row(r) for r in results), key=lambda row: row["attempt_id"])
    return sha256_hex("\n".join(canonical_json(row) for row in rows))
