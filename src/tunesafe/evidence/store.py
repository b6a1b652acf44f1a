"""The evidence store. CONTRACT (other packages code against it):

    store = Store.open(url)            # runs Alembic migrations; UserError (exit 2) if unreachable/corrupt
    store = Store.open(url, read_only=True)   # a reader: never writes, never migrates (see database.py)
    store.write_blocked                 # why it was opened as a reader (read_only_where_unwritable), or None
    rec = store.append(type, body, actor=None, subject=None, check=None) -> EvidenceRecord
                                        # chained, serialized; check() runs under the chain lock
    store.records(type=None, subject=None) -> Iterator[EvidenceRecord]          # in chain order
    store.get(record_id) -> EvidenceRecord
    store.verify() -> VerifyResult     # .ok, .checked, .first_bad (id, expected, found)
    store.engine                        # sqlalchemy Engine, for runs/attempt_results/response_cache
    store.session() -> Session          # context manager
    store.close()

hash = sha256(prev_hash || canonical_json(envelope)) where the envelope holds type, body, created_at,
actor and subject, so none of them can be edited unnoticed (see tunesafe.evidence.chain).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, Executable, insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tunesafe.errors import UserError
from tunesafe.evidence import database
from tunesafe.evidence.chain import VerifyResult, envelope_text, link_hash, verify_rows
from tunesafe.evidence.schema import ChainHead, RecordRow
from tunesafe.types import EvidenceRecord, canonical_json

__all__ = ["DamagedRecord", "Store", "VerifyResult", "default_actor"]

_PAGE = 1000
_COLUMNS = (RecordRow.id, RecordRow.type, RecordRow.body, RecordRow.created_at, RecordRow.actor,
            RecordRow.subject, RecordRow.prev_hash, RecordRow.hash)


class DamagedRecord(UserError):
    """A stored record that no tunesafe version could have written (edited in the database file)."""


def default_actor() -> str:
    """Who appends when no actor is given: TUNESAFE_ACTOR, else user@host."""
    if actor := os.environ.get("TUNESAFE_ACTOR"):
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Store:
    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self.url = url
        self._sessions = sessionmaker(engine)
        self.migrated_from: str | None = None  # the schema revision `open` migrated from, if it did
        self.read_only = False
        self.write_blocked: str | None = None  # why `open` made it a reader when asked for a writer

    @classmethod
    def open(cls, url: str, *, must_exist: bool = False, read_only: bool = False,
             read_only_where_unwritable: bool = False) -> Store:
        """Open (creating if needed) the store at a SQLAlchemy URL or a SQLite file path, migrated to the
        newest schema. With `must_exist` (commands that change records already there) a database without
        a tunesafe schema, a SQLite file that is not there included, is a UserError and nothing is
        created: a mistyped --db would otherwise leave an empty store behind that later commands silently
        use. `read_only` (commands that only read, the dashboard without a token) implies it, and the
        store is neither written nor migrated: an older schema is a UserError naming `tunesafe migrate`.
        `read_only_where_unwritable`: a store this process may not write (a read-only mount, no write
        permission) is opened as a reader rather than refused; `write_blocked` says why."""
        parsed = database.parse_url(url)
        write_blocked = None
        if read_only_where_unwritable and not read_only:
            write_blocked = database.write_blocked(parsed)
        read_only = read_only or write_blocked is not None
        must_exist = must_exist or read_only
        if must_exist and not database.may_hold_store(parsed):
            raise database.no_store_error(parsed)
        engine = database.create(parsed, read_only=read_only)
        migrated_from = None
        try:
            revision = database.current_revision(engine)
            if must_exist and revision is None and not database.has_store_tables(engine):
                raise database.no_store_error(parsed)
            if revision != database.SCHEMA_HEAD and read_only:
                database.refuse_to_read(engine, parsed, revision)
            if revision != database.SCHEMA_HEAD:
                database.migrate(engine, parsed)
                migrated_from = revision
        except DBAPIError as exc:
            engine.dispose()
            raise database.connect_error(parsed, exc) from exc
        except BaseException:
            engine.dispose()
            raise
        store = cls(engine, parsed)
        store.migrated_from = migrated_from
        store.read_only = read_only
        store.write_blocked = write_blocked
        return store

    @property
    def location(self) -> str:
        return database.describe(self.url)

    def session(self) -> Session:
        return self._sessions()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def append(self, type: str, body: Mapping[str, Any], actor: str | None = None,
               subject: str | None = None, check: Callable[[], None] | None = None) -> EvidenceRecord:
        """Add one record at the end of the chain."""
        return self.append_many([(type, body, subject)], actor=actor, check=check)[0]

    def append_many(self, items: Sequence[tuple[str, Mapping[str, Any], str | None]],
                    actor: str | None = None,
                    check: Callable[[], None] | None = None) -> list[EvidenceRecord]:
        """Add (type, body, subject) records in one transaction: all of them or none. The chain head row
        is locked for the whole transaction (FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), so
        concurrent writers queue up instead of forking the chain. `check` runs once the lock is held and
        may read the store (no other append can commit meanwhile); what it raises refuses the append, so
        a rule such as "this name is new" holds even when two processes append at once."""
        actor = actor or default_actor()
        prepared = [(type_, canonical_json(dict(body)), subject) for type_, body, subject in items]
        for (type_, body_json, subject), (_, body, _) in zip(prepared, items, strict=True):
            try:
                "".join((type_, body_json, actor, subject or "")).encode("utf-8")
            except UnicodeEncodeError:  # hashing would stop on it: name the field instead
                _check_text(type_, {"actor": actor, "subject": subject, "body": body})
        out: list[EvidenceRecord] = []
        rows: list[dict[str, Any]] = []
        with self._guard(), self.engine.begin() as conn:
            head = conn.execute(select(ChainHead.last_id, ChainHead.last_hash)
                                .where(ChainHead.id == 1).with_for_update()).one_or_none()
            if head is None:  # deleted behind the store's back; guessing where the chain ends would fork it
                raise UserError("the evidence chain head is missing (the chain_head row was deleted)",
                                where=self.location, fix="run `tunesafe verify` and restore the database "
                                "from a backup")
            if check is not None:
                check()
            # stamped under the lock, so created_at never goes backwards along the chain (on one clock)
            created_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            last_id, last_hash = head.last_id, head.last_hash
            for type_, body_json, subject in prepared:
                digest = link_hash(last_hash, envelope_text(type_, body_json, created_at, actor, subject))
                row = {"id": last_id + 1, "type": type_, "body": body_json, "created_at": created_at,
                       "actor": actor, "subject": subject, "prev_hash": last_hash, "hash": digest}
                rows.append(row)
                out.append(EvidenceRecord(**{**row, "body": json.loads(body_json)}))
                last_id, last_hash = last_id + 1, digest
            if rows:
                conn.execute(insert(RecordRow), rows)
                conn.execute(update(ChainHead).where(ChainHead.id == 1)
                             .values(last_id=last_id, last_hash=last_hash))
        return out

    def records(self, type: str | None = None, subject: str | None = None) -> Iterator[EvidenceRecord]:
        """Records in chain order, fetched a page at a time (no connection is held between pages)."""
        query = select(*_COLUMNS).order_by(RecordRow.id).limit(_PAGE)
        if type is not None:
            query = query.where(RecordRow.type == type)
        if subject is not None:
            query = query.where(RecordRow.subject == subject)
        after = 0
        while True:
            rows = self._read(query.where(RecordRow.id > after))
            yield from (_record(row, self.location) for row in rows)
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def get(self, record_id: int) -> EvidenceRecord:
        # an id past the database's 64-bit integers cannot exist; the driver would raise OverflowError
        in_range = 1 <= record_id < 2 ** 63
        rows = self._read(select(*_COLUMNS).where(RecordRow.id == record_id)) if in_range else []
        if not rows:
            raise UserError(f"no evidence record with id {record_id}", where=self.location,
                            fix="check the id: records are numbered 1..N in chain order")
        return _record(rows[0], self.location)

    def verify(self, anchors: Mapping[int, str] | None = None) -> VerifyResult:
        """Recompute the whole chain in one read transaction, streaming rows, and check that each anchored
        record id {id: hash} has that hash. The transaction must be a snapshot (SQLite WAL reads are;
        PostgreSQL needs REPEATABLE READ), or records appended between reading the head and reading the
        rows would look like a forged head."""
        with self._guard(), self.engine.connect() as conn:
            options: dict[str, Any] = {"sqlite_read": True, "yield_per": _PAGE}
            if conn.dialect.name == "postgresql":
                options["isolation_level"] = "REPEATABLE READ"
            conn = conn.execution_options(**options)
            with conn.begin():
                head = conn.execute(select(ChainHead.last_id, ChainHead.last_hash)
                                    .where(ChainHead.id == 1)).one_or_none()
                rows = conn.execute(select(*_COLUMNS).order_by(RecordRow.id))
                if head is None:  # deleted behind the store's back: a broken chain, not a crash
                    return verify_rows(rows, None, None, anchors)  # type: ignore[arg-type]
                return verify_rows(rows, head.last_id, head.last_hash, anchors)  # type: ignore[arg-type]

    def _read(self, query: Executable) -> list[Any]:
        with self._guard(), self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_read=True)
            with conn.begin():
                return list(conn.execute(query).all())

    def _guard(self) -> _DatabaseErrors:
        return _DatabaseErrors(self.url)


class _DatabaseErrors:
    """Turns a database failure during use (server gone, file corrupted) into a UserError naming it."""

    def __init__(self, url: URL) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, DBAPIError):
            raise database.connect_error(self.url, exc) from exc


def _check_text(type_: str, value: Any, path: str = "") -> None:
    """UserError naming the field whose text cannot be stored as UTF-8: a command-line argument in another
    encoding reaches Python as lone surrogates, which hashing (UTF-8) would stop on with a traceback."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"not valid UTF-8 text: {value!r:.80}", where=f"{type_} record, {path or 'text'}",
                            fix="pass the text in UTF-8 (check the terminal's or file's encoding)") from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_text(type_, key, path)
            _check_text(type_, item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_text(type_, item, f"{path}[{index}]")


def _record(row: Any, location: str) -> EvidenceRecord:
    rid, type_, body, created_at, actor, subject, prev_hash, digest = row
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError):
        parsed = None
    # append only ever stores a JSON object: anything else was written behind the store's back, and every
    # reader (controls, documents, the dashboard) would stop on it with a traceback
    if not isinstance(parsed, dict):
        raise DamagedRecord(f"evidence record {rid} ({type_}) holds a body that is not a JSON object (edited "
                        "outside tunesafe)", where=location,
                        fix="run `tunesafe verify` and restore the database from a backup")
    return EvidenceRecord(id=rid, type=type_, body=parsed, created_at=created_at, actor=actor,
                          prev_hash=prev_hash, hash=digest, subject=subject)
