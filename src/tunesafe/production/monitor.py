"""`tunesafe monitor ingest`: read production chat logs (tunesafe.production.monitor_formats), judge them
(monitor_assess), store one compact row per record and the per-day aggregates (monitor_aggregate), and
open incidents where the policy's `monitor:` thresholds are crossed (monitor_thresholds).

    summary = ingest(store, "logs/chat.jsonl", model="support-bot")          # resumes where it stopped
    summary = ingest(store, "-", model="support-bot", stream=sys.stdin.buffer)

Contract:
- Resumable: for a file, the byte offset and line number reached are stored per (model, path) with a hash
  of the file's first bytes; the next ingest starts there, and a file that was rotated, replaced or
  truncated (its first bytes differ, or it is shorter) is read from the start. The offset stays before the
  first line of an OTLP logs call whose answer is not read yet, so the next ingest reads that call whole.
- Idempotent: rows are keyed by (model, record hash), so records already stored are never counted twice,
  whichever path or stream they come from; a chunk that stored nothing new writes no evidence.
- Never fatal on bad lines: a line that is not a readable record is counted with its line number and the
  reason (Malformed), and reading goes on. An unterminated last line is left for the next run unless it
  is already a complete JSON object (a writer may be in the middle of it).
- Evidence: one RecordType.MONITOR_INGEST record per chunk that stored new records (counts, the day
  aggregates touched, a digest over the new record hashes, the flagged ones, malformed line numbers, the
  judge/detector versions), never one per log line. The rows commit first, then the evidence record, the
  thresholds, and last the file offset: a crash in between leaves rows whose batch has no record (`batch`
  names it), and the next ingest reads those lines again, finds them stored and checks their days'
  thresholds, so an incident they call for still opens.
- `follow=True` keeps reading as the file grows (poll every `poll_s`), committing what arrived every
  `flush_s` (or every `chunk_lines` lines), and from the start again when the file is truncated under it
  (copytruncate). When the file is renamed away and a new one created at its path (logrotate's create),
  it reads the renamed file to its end, then the new one from its start; all this until `stop` is set,
  or `idle_exit_s` passes without new data, or KeyboardInterrupt (a chunk not yet committed is read again
  by the next ingest).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from tunesafe.errors import UserError
from tunesafe.evidence.schema import MonitorSourceRow
from tunesafe.evidence.store import Store
from tunesafe.policy.model import MonitorPolicy
from tunesafe.production.clocks import check_kinds, utcnow
from tunesafe.production.monitor_aggregate import daily, insert_new
from tunesafe.production.monitor_assess import Assessment, Assessor
from tunesafe.production.monitor_formats import FORMATS, LogRecord, Malformed, parse_line
from tunesafe.production.monitor_thresholds import open_incidents
from tunesafe.production.otlp_logs import OtlpLogs, single_document
from tunesafe.types import RecordType, sha256_hex

HEAD_BYTES = 4096  # a file is "the same file" while its first bytes (up to this many) are unchanged
CHUNK_LINES = 2000  # lines judged and committed together
FLUSH_S = 10.0  # with follow: lines that arrived are judged and committed at least this often
MALFORMED_LISTED = 100  # line numbers kept in the summary / evidence; all are counted
READ_BYTES = 1 << 20
# why an OTLP logs call left open by a rotated file is reported: its answer, logged after the rotation,
# is in the new file without its request (an error record there, never judged)
ROTATED = "before the log was rotated or truncated (an answer logged after it is read without its request)"


@dataclass
class IngestSummary:
    model: str
    source: str  # the path, or "-" for stdin
    start_line: int = 0  # lines already read before this ingest (resumed)
    lines: int = 0  # lines read now
    records: int = 0
    new: int = 0
    duplicates: int = 0
    skipped_spans: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # judged/blocked/error/sampled_out/harmful/...
    untimed: int = 0  # new records whose line had no time: counted for the day of the ingest
    naive_times: int = 0  # new records whose time had no offset: read as UTC
    malformed: int = 0
    malformed_lines: list[tuple[int, str]] = field(default_factory=list)
    incomplete_tail: bool = False  # an unterminated last line was left for the next run
    pending_calls: int = 0  # OTLP logs calls whose answer is not in the file yet: left for the next run
    # the file was rotated, replaced or truncated since the last ingest, which had read this many lines:
    # what the old file got after them is not in this file
    restarted_after_line: int | None = None
    batches: list[int] = field(default_factory=list)  # MONITOR_INGEST evidence record ids
    incidents: list[int] = field(default_factory=list)
    days: set[str] = field(default_factory=set)

    def as_dict(self, store: Store | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model, "source": self.source, "start_line": self.start_line, "lines": self.lines,
            "records": self.records, "new": self.new, "duplicates": self.duplicates,
            "skipped_spans": self.skipped_spans, "counts": dict(sorted(self.counts.items())),
            "untimed": self.untimed, "naive_times": self.naive_times, "malformed": self.malformed,
            "malformed_lines": [{"line": n, "reason": r} for n, r in self.malformed_lines],
            "incomplete_tail": self.incomplete_tail, "pending_calls": self.pending_calls,
            "restarted_after_line": self.restarted_after_line,
            "batches": self.batches, "incidents": self.incidents,
            "days": sorted(self.days)}
        if store is not None:
            out["daily"] = [d.as_dict() for d in daily(store, model=self.model, days=self.days)]
        return out


def ingest(store: Store, source: str | Path, *, model: str, fmt: str = "auto", sample: float = 1.0,
           judge: str = "default", detectors: tuple[str, ...] = ("attack_library",),
           policy: MonitorPolicy | None = None, follow: bool = False, poll_s: float = 0.5,
           flush_s: float = FLUSH_S,
           idle_exit_s: float | None = None, stop: threading.Event | None = None,
           stream: IO[bytes] | None = None, chunk_lines: int = CHUNK_LINES, actor: str | None = None,
           now: datetime | None = None, assessor: Assessor | None = None,
           triage: bool = True) -> IngestSummary:
    """Ingest a log file (or `stream` when source is "-"). UserError for bad input (unknown model or
    format, unreadable file, bad sample rate); nothing stored is lost then. A given `assessor` (judge,
    detectors and sample rate already chosen, models loaded) is used instead of building one."""
    from tunesafe.production.inventory import get_model

    if fmt not in FORMATS:
        raise UserError(f"unknown log format {fmt!r}", where="--format",
                        fix=f"use one of {', '.join(FORMATS)}")
    try:
        get_model(store, model)
    except UserError as exc:
        raise UserError(exc.message, where="--model", fix=exc.fix) from None
    policy = policy or MonitorPolicy()
    check_kinds(policy.kind, where="policy monitor.kind")  # before reading: not after the records are in
    if str(source) == "-" and follow:
        raise UserError("--follow needs a file", where="--follow",
                        fix="stdin is read until it closes anyway; pass a file path to tail it")
    assessor = assessor or Assessor(judge, detectors, sample, triage)
    run = _Ingest(store, model, str(source), fmt, assessor, policy, actor, now)
    document = None if str(source) == "-" or follow else single_document(Path(source))
    if document is not None:
        # an export saved as one indented JSON document is read as one line: no offset is kept, and its
        # records' hashes keep a second ingest from counting them again
        run.read_stream(io.BytesIO(document), chunk_lines, _file_key(Path(source)))
    elif str(source) == "-":
        run.read_stream(stream, chunk_lines)
    else:
        run.read_file(Path(source), chunk_lines, follow=follow, poll_s=poll_s, flush_s=flush_s,
                      idle_exit_s=idle_exit_s, stop=stop or threading.Event())
        run.summary.pending_calls = run.logs.pending
    return run.summary


def open_log(path: Path) -> IO[bytes]:
    """The log opened for reading; UserError when it is missing, unreadable or not a regular file. The CLI
    calls it before it opens the store too: bad input must leave no new, empty store at a --db path."""
    try:
        # without O_NONBLOCK, opening a FIFO waits for a writer, for good if none comes
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UserError(f"cannot read the log: {exc.strerror}", where=str(path),
                        fix="give an existing, readable JSONL / OTLP JSON file, or - for stdin") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError("not a regular file", where=str(path), fix="give a log file, or - for stdin")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


@dataclass(frozen=True)
class _Line:
    number: int
    end: int  # byte offset just after the line
    text: bytes


@dataclass
class _Cursor:
    """How far an open log was read: the byte offset and line number reached, the start of a line not
    ended yet, and the file's first bytes (a change in them means it was truncated and written again)."""

    handle: IO[bytes]
    offset: int = 0
    line: int = 0
    pending: bytes = b""
    head: bytes = b""

    def lines(self, data: bytes) -> list[_Line]:
        """The lines `data` ends; the rest waits in `pending`."""
        *complete, self.pending = (self.pending + data).split(b"\n")
        out = []
        for raw in complete:
            self.offset += len(raw) + 1
            self.line += 1
            out.append(_Line(self.line, self.offset, raw))
        return out

    def rest(self) -> _Line:
        """The unterminated last line, taken as a line."""
        self.offset += len(self.pending)
        self.line += 1
        raw, self.pending = self.pending, b""
        return _Line(self.line, self.offset, raw)


class _Ingest:
    def __init__(self, store: Store, model: str, source: str, fmt: str, assessor: Assessor,
                 policy: MonitorPolicy, actor: str | None, now: datetime | None) -> None:
        self.store, self.model, self.fmt, self.assessor = store, model, fmt, assessor
        self.policy, self.actor, self.now = policy, actor, now
        self.summary = IngestSummary(model=model, source=source)
        self.logs = OtlpLogs()  # OTLP logs calls whose answer is in a later line

    # ---- sources ---------------------------------------------------------------------------------------

    def read_stream(self, stream: IO[bytes] | None, chunk_lines: int, source_key: str = "stdin") -> None:
        if stream is None:
            raise UserError("no input stream for '-'", where="PATH", fix="pipe the log into stdin")
        chunk: list[_Line] = []
        number = 0
        for number, raw in enumerate(stream, 1):
            chunk.append(_Line(number, 0, raw))
            if len(chunk) >= chunk_lines:
                self._process(chunk, source_key=source_key, position=None)
                chunk = []
        self._process(chunk, source_key=source_key, position=None)
        for reason in self.logs.close():  # no later run reads this stream again
            self._malformed(Malformed(number, reason))

    def read_file(self, path: Path, chunk_lines: int, *, follow: bool, poll_s: float, flush_s: float,
                  idle_exit_s: float | None, stop: threading.Event) -> None:
        resolved = str(path.expanduser().resolve())
        key = _file_key(path)
        with ExitStack() as files:
            handle = files.enter_context(open_log(path))
            offset, line = self._resume(resolved, handle)
            around = os.pread(handle.fileno(), 3, offset - 1) if offset else b"\n"
            if around[:1] != b"\n":
                # the last ingest took an unterminated last line that was already a whole JSON object;
                # the line end written since ends that line, it does not start one
                offset += next((len(end) for end in (b"\n", b"\r\n") if around[1:].startswith(end)), 0)
            self.summary.start_line = line
            handle.seek(offset)
            idle_since = flushed = time.monotonic()
            chunk: list[_Line] = []
            cur = _Cursor(handle, offset, line, head=os.pread(handle.fileno(), HEAD_BYTES, 0))
            while True:
                if follow and _truncated(cur.handle, cur.head):
                    # copytruncate (logrotate) or a writer that started the file over: what it holds now
                    # is a new log, from its first byte. The lines read before are stored with no position:
                    # theirs is in bytes that are gone, and would be saved with the new content's first
                    # bytes, a position inside the new log that a run stopped now would leave behind
                    self._process(chunk, key, None, ended=cur.line)
                    chunk, flushed = [], time.monotonic()
                    self.summary.restarted_after_line = cur.line
                    cur = _Cursor(cur.handle)
                    cur.handle.seek(0)
                if len(cur.head) < HEAD_BYTES:
                    cur.head = os.pread(cur.handle.fileno(), HEAD_BYTES, 0)
                data = cur.handle.read(READ_BYTES)
                if data:
                    idle_since = time.monotonic()
                    for item in cur.lines(data):
                        chunk.append(item)
                        if len(chunk) >= chunk_lines:
                            self._process(chunk, key, (resolved, cur.handle))
                            chunk, flushed = [], time.monotonic()
                    continue
                # end of the data written so far
                try:
                    fresh = _reopen_rotated(path, cur.handle) if follow else None
                except UserError:
                    self._process(chunk, key, (resolved, cur.handle))  # what was read stays stored
                    raise
                if fresh is not None:
                    # logrotate's create mode renamed the log away (read to its end now) and a new one is
                    # at the path: an unterminated last line of the old one is never ended, so it is read
                    # as it is (a whole JSON object is a record, anything else a malformed line)
                    if cur.pending:
                        chunk.append(cur.rest())
                    self._process(chunk, key, (resolved, cur.handle), ended=cur.line)
                    chunk, flushed = [], time.monotonic()
                    cur.handle.close()
                    # its offset is stored with its first chunk; a run stopped before that leaves the old
                    # file's, and the next ingest says the file was rotated (and reads it from its start)
                    cur = _Cursor(files.enter_context(fresh))
                    continue
                if not follow and cur.pending and _is_json_object(cur.pending):
                    chunk.append(cur.rest())
                idle = time.monotonic() - idle_since
                stopping = not follow or stop.is_set() or (idle_exit_s is not None and idle >= idle_exit_s)
                # a slow trickle is committed every flush_s, not on every poll: one evidence record per
                # poll would be one per line
                if stopping or time.monotonic() - flushed >= flush_s:
                    self._process(chunk, key, (resolved, cur.handle))
                    chunk, flushed = [], time.monotonic()
                if stopping:
                    self.summary.incomplete_tail = not follow and bool(cur.pending.strip())
                    return
                try:
                    stop.wait(poll_s)
                except KeyboardInterrupt:
                    return

    def _resume(self, path: str, handle: IO[bytes]) -> tuple[int, int]:
        with self.store.engine.connect() as conn:
            conn = conn.execution_options(sqlite_read=True)
            with conn.begin():
                row = conn.execute(select(MonitorSourceRow.head_len, MonitorSourceRow.head_sha256,
                                          MonitorSourceRow.offset, MonitorSourceRow.line)
                                   .where(MonitorSourceRow.model == self.model, MonitorSourceRow.path == path)
                                   ).first()
        if row is None:
            return 0, 0
        head = handle.read(row.head_len)
        size = os.fstat(handle.fileno()).st_size
        same = len(head) == row.head_len and hashlib.sha256(head).hexdigest() == row.head_sha256
        if not same or size < row.offset:  # rotated, replaced or truncated: a new file under the old name
            self.summary.restarted_after_line = int(row.line)
            return 0, 0
        return int(row.offset), int(row.line)

    # ---- one chunk -------------------------------------------------------------------------------------

    def _process(self, chunk: list[_Line], source_key: str,
                 position: tuple[str, IO[bytes]] | None, ended: int | None = None) -> None:
        """Judge and store one chunk. `ended`: the last line of a content that was rotated away (or
        truncated) after this chunk: the OTLP logs calls it left open are reported and dropped, since
        their line numbers are of that content and must not hold the resume point back in the next."""
        if not chunk:
            if ended is not None:
                self._close_calls(ended)
            return
        records: list[LogRecord] = []
        for item in chunk:
            self.summary.lines += 1
            try:
                # a byte order mark (Windows tools write one; `cat` of such files puts it mid-file)
                text = item.text.decode("utf-8").strip().lstrip("\ufeff").strip()
            except UnicodeDecodeError:
                self._malformed(Malformed(item.number, "not UTF-8 text"))
                continue
            if not text:
                continue
            parsed = parse_line(text, item.number, self.fmt, self.logs)
            if isinstance(parsed, Malformed):
                self._malformed(parsed)
                continue
            records.extend(parsed.records)
            self.summary.skipped_spans += parsed.skipped
            for problem in parsed.problems:
                self._malformed(Malformed(item.number, problem))
        if ended is not None:  # before the evidence: it lists the chunk's malformed lines
            self._close_calls(ended)
        assessments = self.assessor.assess(records)
        batch = uuid.uuid4().hex
        now = self.now or utcnow()
        rows = [_row(self.model, rec, a, source_key, batch, now) for rec, a in zip(records, assessments,
                                                                                     strict=True)]
        with self.store.engine.begin() as conn:
            new = insert_new(conn, rows)
        fresh = [(rec, a, row) for rec, a, row in zip(records, assessments, rows, strict=True)
                 if rec.hash in new]
        self.summary.records += len(records)
        self.summary.new += len(new)
        self.summary.untimed += sum(1 for rec, _, _ in fresh if rec.at is None)
        self.summary.naive_times += sum(1 for rec, _, _ in fresh if rec.naive_time)
        self.summary.duplicates += len(records) - len(new)
        evidence = self._evidence(chunk, batch, records, new, fresh) if fresh else None
        # Every day the chunk holds, not only its new records' days: rows committed by an ingest that
        # stopped before its thresholds were checked come back as duplicates (the offset is saved only
        # after this), and are checked now. A window already claimed opens nothing.
        if rows:
            self.summary.incidents += open_incidents(
                self.store, self.model, {row["day"] for row in rows}, self.policy,
                batch=None if evidence is None else (batch, evidence), actor=self.actor, now=self.now)
        # A first ingest that has read nothing but malformed lines is most likely the wrong --format (the
        # CLI exits 3 and says so): its resume point stays at the start, or the run with the right format
        # would skip every line. Once records were read, bad lines are skipped as usual.
        unread = not self.summary.records and self.summary.malformed and not self.summary.start_line
        # the next ingest starts before the first line of a call whose answer is still to come
        waiting = self.logs.pending_since
        last = next((item for item in reversed(chunk) if waiting is None or item.number < waiting), None)
        if position is not None and not unread and last is not None:
            with self.store.engine.begin() as conn:
                self._save_offset(conn, position, last, now)

    def _evidence(self, chunk: list[_Line], batch: str, records: list[LogRecord], new: set[str],
                  fresh: list[tuple[LogRecord, Assessment, dict[str, Any]]]) -> int:
        """The MONITOR_INGEST record of a chunk that stored new records; its id."""
        counts = _counts([a for _, a, _ in fresh])
        self.summary.counts.update(counts)
        days = {row["day"] for _, _, row in fresh}
        self.summary.days |= days
        body = {
            "model": self.model, "batch": batch, "source": self.summary.source, "format": self.fmt,
            "lines": [chunk[0].number, chunk[-1].number], "records": len(records), "new": len(new),
            "counts": dict(sorted(counts.items())), "days": sorted(days),
            "digest": sha256_hex("\n".join(sorted(new))),
            "flagged": sorted(row["record_hash"] for _, a, row in fresh if a.flagged),
            "malformed": [[n, r] for n, r in self.summary.malformed_lines
                          if chunk[0].number <= n <= chunk[-1].number][:MALFORMED_LISTED],
            **self.assessor.versions(),
        }
        evidence = self.store.append(RecordType.MONITOR_INGEST, body, actor=self.actor, subject=self.model)
        self.summary.batches.append(evidence.id)
        return evidence.id

    def _close_calls(self, line: int) -> None:
        for reason in self.logs.close(ROTATED):
            self._malformed(Malformed(line, reason))

    def _malformed(self, bad: Malformed) -> None:
        self.summary.malformed += 1
        if len(self.summary.malformed_lines) < MALFORMED_LISTED:
            self.summary.malformed_lines.append((bad.line, bad.reason))

    def _save_offset(self, conn: Any, position: tuple[str, IO[bytes]], last: _Line, now: datetime) -> None:
        path, handle = position
        head_len = min(HEAD_BYTES, last.end)
        head = os.pread(handle.fileno(), head_len, 0)
        values = {"model": self.model, "path": path, "head_len": head_len,
                  "head_sha256": hashlib.sha256(head).hexdigest(), "offset": last.end, "line": last.number,
                  "updated_at": now}
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(MonitorSourceRow).values(**values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["model", "path"], set_={
            k: stmt.excluded[k] for k in ("head_len", "head_sha256", "offset", "line", "updated_at")}))


def _row(model: str, rec: LogRecord, a: Assessment, source: str, batch: str, now: datetime) -> dict[str, Any]:
    at = rec.at or now
    conversation = None
    if a.flagged:
        conversation = {"messages": [{"role": r, "content": t} for r, t in rec.messages],
                        "response": rec.response, "log_model": rec.log_model}
    return {"model": model, "record_hash": rec.hash, "day": at.strftime("%Y-%m-%d"),
            "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "source": source, "line": rec.line, "batch": batch,
            "status": a.status, "refused": a.refused, "harmful": a.harmful,
            "request_harmful": a.request_harmful,
            "jailbreak": a.jailbreak[:120] if a.jailbreak else None,
            "category": a.category[:80] if a.category else None, "conversation": conversation}


def _counts(assessments: list[Assessment]) -> Counter[str]:
    counts: Counter[str] = Counter(a.status for a in assessments)
    counts["refused"] = sum(1 for a in assessments if a.status == "judged" and a.refused)
    counts["harmful"] = sum(1 for a in assessments if a.harmful)
    counts["jailbreaks"] = sum(1 for a in assessments if a.jailbreak is not None)
    counts["successful_jailbreaks"] = sum(1 for a in assessments if a.jailbreak is not None and a.harmful)
    return counts


def _file_key(path: Path) -> str:
    """The `source` of a file's rows: a digest of its resolved path."""
    return sha256_hex(str(path.expanduser().resolve()))[:16]


def _truncated(handle: IO[bytes], head: bytes) -> bool:
    """Whether the open file was cut shorter than what was read of it, or its first bytes changed."""
    if os.fstat(handle.fileno()).st_size < handle.tell():
        return True
    return os.pread(handle.fileno(), len(head), 0) != head


def _reopen_rotated(path: Path, handle: IO[bytes]) -> IO[bytes] | None:
    """The new log at `path` once a rotation renamed the open one away (logrotate's create mode), opened;
    None while the path still names the open file or names nothing yet, or when the open one grew since it
    was last read (the rest of it is read first). UserError when the path names something other than a
    regular file (a FIFO, a folder): no log will come there."""
    try:
        named = os.stat(path)
    except OSError:
        return None
    held = os.fstat(handle.fileno())
    if (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino) or held.st_size > handle.tell():
        return None
    if not stat.S_ISREG(named.st_mode):
        raise UserError("not a regular file after the log was rotated", where=str(path),
                        fix="make the writer (or logrotate) create a log file there, and ingest again")
    try:
        return open_log(path)
    except UserError:  # gone or replaced again since the stat: the next poll looks again
        return None


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, UnicodeDecodeError):
        return False

