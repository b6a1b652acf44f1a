"""OpenTelemetry GenAI calls from an OTLP *logs* export (`{"resourceLogs": [...]}`, one export request per
line as the file exporter writes it), read into the LogRecords the span reader produces.

- Semantic conventions <= 1.36: one log record per message, `gen_ai.{system,user,assistant,tool}.message`,
  and one `gen_ai.choice` per answer, the content in the body (an AnyValue map, or its JSON text); the
  event is named by `eventName`, or by the `event.name` attribute in older SDKs. The records of one call
  share traceId + spanId. The batch processor exports what it holds every second or so, so the messages
  (logged when the call starts) and the choices (logged when the answer comes) are often in different
  lines: a call is read at the line of its choices, and until then it is pending (`OtlpLogs` keeps it
  across the lines of one read; the ingest keeps its resume point before the first line of a pending
  call, so a call cut by the end of one ingest is read whole by the next).
- >= 1.37: `gen_ai.client.inference.operation.details` holds the whole call in its attributes
  (`gen_ai.input.messages` / `gen_ai.output.messages` / `gen_ai.system_instructions`): a call on its own.
- A call logged without content (capture off: roles and finish reasons only) is a problem that names the
  setting, never a record: nothing it said was judged. An answer whose request is not in the lines read
  is an error record (never judged, never safe); it has the hash of its whole call, so an answer a
  resumed ingest reads again without its request is a duplicate of the call already stored.
Other log records (the application's own logs, gen_ai.evaluation.result) are skipped, and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError
from tunesafe.json_lines import BadJson, decode, raw_decode
from tunesafe.production.monitor_formats import (
    _UNREADABLE,
    ROLES,
    LogRecord,
    Parsed,
    _Bad,
    _event_messages,
    _structured,
    any_value,
    attributes,
    call_records,
    otlp_items,
    unix_nano,
)
from tunesafe.types import canonical_json, sha256_hex

DETAILS = "gen_ai.client.inference.operation.details"
CHOICE = "gen_ai.choice"
MESSAGES = frozenset(f"gen_ai.{role}.message" for role in ROLES)
# A call still without its answer this many lines after its first record failed, or its answer was not
# logged: it is reported, and no longer holds the ingest's resume point back
MAX_PENDING_LINES = 1000
DOCUMENT_BYTES = 512 << 20  # an export saved as one document is read whole: up to this size
HEAD_BYTES = 4096
NO_CONTENT = ("has no message content (content capture is off: set "
              "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true)")


@dataclass
class _Call:
    """The log records of one call (one traceId + spanId) read so far."""

    first_line: int
    records: list[Mapping[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (event name, body)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return any(name == CHOICE for name, _ in self.events)


class OtlpLogs:
    """Reads the export lines of one log in order, keeping the calls whose answer is still to come."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], _Call] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def pending_since(self) -> int | None:
        """The first line of the oldest call still waiting for its answer."""
        return min((call.first_line for call in self._pending.values()), default=None)

    def read(self, obj: Mapping[str, Any], line: int) -> Parsed:
        resource_logs = obj.get("resourceLogs")
        if not isinstance(resource_logs, list):
            raise _Bad("OTLP logs line without a resourceLogs list")
        records: list[LogRecord] = []
        skipped = 0
        problems: list[str] = []
        ready: list[tuple[tuple[str, str], _Call]] = []
        for record in _log_records(resource_logs):
            try:
                name, attrs = _event(record)
                if name == DETAILS:
                    records.extend(_details(record, attrs, line))
                elif name in MESSAGES or name == CHOICE:
                    ready.extend(self._add(record, name, attrs, line))
                else:
                    skipped += 1
            except _Bad as exc:
                problems.append(str(exc))
            except _UNREADABLE as exc:
                problems.append(f"log record {record.get('spanId', '?')} is unreadable "
                                f"({type(exc).__name__}: {str(exc)[:120]})")
        # every choice of this line belongs to its call: a call is read once its line is
        answered = [key for key, call in self._pending.items() if call.answered]
        ready += [(key, self._pending.pop(key)) for key in answered]
        for key, call in ready:
            try:
                records.extend(_call_records(key, call, line))
            except _Bad as exc:
                problems.append(str(exc))
            except _UNREADABLE as exc:
                problems.append(f"call {_name(key)} is unreadable ({type(exc).__name__}: {str(exc)[:120]})")
        problems += self._expire(line)
        return Parsed(records, skipped, tuple(problems))

    def close(self, where: str = "in the log") -> list[str]:
        """The calls still without their answer (`where`: the content that lacks it), as problems; none is
        kept."""
        problems = [f"call {_name(key)} (line {call.first_line}) has no answer {where}: the call failed, "
                    "or its gen_ai.choice was not logged" for key, call in self._pending.items()]
        self._pending.clear()
        return problems

    def _add(self, record: Mapping[str, Any], name: str, attrs: dict[str, Any],
             line: int) -> list[tuple[tuple[str, str], _Call]]:
        """Add one event to its call; a call that a new message follows after its answer is done (a
        gateway that logs several calls under one span), and is returned."""
        trace, span = record.get("traceId"), record.get("spanId")
        if not (isinstance(trace, str) and trace and isinstance(span, str) and span):
            raise _Bad(f"a {name} log record without traceId/spanId: which call it belongs to is unknown "
                       "(log it inside the call's span)")
        key = (trace, span)
        done = []
        call = self._pending.get(key)
        if call is not None and name in MESSAGES and call.answered:
            done.append((key, self._pending.pop(key)))
            call = None
        if call is None:
            call = self._pending[key] = _Call(line)
        call.records.append(record)
        call.events.append((name, _body(record, name)))
        call.attrs.update(attrs)
        return done

    def _expire(self, line: int) -> list[str]:
        stale = [key for key, call in self._pending.items() if line - call.first_line >= MAX_PENDING_LINES]
        problems = [f"call {_name(key)} (line {self._pending[key].first_line}) has no answer within "
                    f"{MAX_PENDING_LINES} lines: the call failed, or its gen_ai.choice was not logged"
                    for key in stale]
        for key in stale:
            del self._pending[key]
        return problems


def _log_records(resource_logs: Sequence[Any]) -> Iterator[Mapping[str, Any]]:
    return otlp_items(resource_logs, "scopeLogs", "logRecords", "a log record")


def _event(record: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    attrs = attributes(record.get("attributes"))
    name = record.get("eventName") or attrs.get("event.name")
    return (name if isinstance(name, str) else None), attrs


def _body(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    """An event's body as a map: an AnyValue map, or its JSON text; other text is the content itself."""
    body = any_value(record.get("body"))
    if isinstance(body, str) and body.lstrip().startswith("{"):
        try:
            body = decode(body, unique_keys=False)
        except BadJson:
            raise _Bad(f"{name}: its body is not JSON") from None
    if body is None:
        return {}
    return body if isinstance(body, dict) else {"content": body}


def _time(records: Sequence[Mapping[str, Any]]) -> datetime | None:
    """When the call started: its first record's time (or the time the SDK observed it)."""
    times = [t for r in records if (t := unix_nano(r.get("timeUnixNano")) or unix_nano(
        r.get("observedTimeUnixNano"))) is not None]
    return min(times, default=None)


def _name(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


def _details(record: Mapping[str, Any], attrs: dict[str, Any], line: int) -> list[LogRecord]:
    """A >= 1.37 operation-details event: the whole call, its attributes as on a span (also in the body)."""
    body = any_value(record.get("body"))
    content = {**(body if isinstance(body, dict) else {}), **attrs}
    what = f"call {record.get('traceId') or '?'}/{record.get('spanId') or '?'}"
    found = _structured(content)
    if found is None or not any(text.strip() for _, text in found[0]):
        raise _Bad(f"{what} {NO_CONTENT}")
    error = content.get("error.type")
    return call_records(what, found, content, error=str(error) if error else None, exceptions=(),
                        at=_time([record]), digest=sha256_hex(canonical_json(record)), line=line)


def _call_records(key: tuple[str, str], call: _Call, line: int) -> list[LogRecord]:
    what = f"call {_name(key)}"
    # the hash is over the answers alone, the part every reading of the call has: an answer read again
    # without its request (a resumed ingest starts after the request's line) is the call already stored
    digest = sha256_hex(canonical_json([r for r, (n, _) in zip(call.records, call.events, strict=True)
                                        if n == CHOICE]))
    messages, answers = _event_messages(call.events) or ((), ())
    at = _time(call.records)
    if not messages:
        return [LogRecord(hash=digest, line=line, at=at, messages=(), response="",
                          error=f"{what}: an answer whose request is not in the log read (logged before "
                                "this file, or in lines an earlier ingest read): nothing to judge")]
    if not any(text.strip() for _, text in messages):
        raise _Bad(f"{what} {NO_CONTENT}")
    return call_records(what, (messages, answers), call.attrs, error=None, exceptions=(), at=at,
                        digest=digest, line=line)


def single_document(path: Path) -> bytes | None:
    """An OTLP export saved as one JSON document over many lines (indented; several such documents one
    after another too), as JSON lines, one per document; None for any other file, which is read line by
    line. UserError, naming the file and line, for such a document that is not JSON."""
    if not path.is_file():  # a FIFO would block the open; the line reader refuses it and says why
        return None
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return None  # the line reader says why it cannot read it
    first, newline, rest = head.removeprefix(b"\xef\xbb\xbf").lstrip().partition(b"\n")  # Windows tools' BOM
    # an indented document's first line opens it; no JSON line, whole or cut short by a writer, ends so
    opens = first.startswith(b"{") and first.rstrip().endswith((b"{", b"[", b","))
    if not (newline and rest.strip() and opens and (b'"resourceLogs"' in head or b'"resourceSpans"' in head)):
        return None
    where = str(path)
    if path.stat().st_size > DOCUMENT_BYTES:
        raise UserError(f"an OTLP export saved as one JSON document of more than {DOCUMENT_BYTES >> 20} MiB",
                        where=where, fix="export it as JSON lines (the file exporter's default), one "
                        "export request per line")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start})", where=where, fix="save the export as UTF-8") \
            from None
    documents, pos = [], 0
    while pos < len(text.rstrip()):
        start = len(text) - len(text[pos:].lstrip())
        try:
            document, pos = raw_decode(text, start)
        except json.JSONDecodeError as exc:
            raise UserError(f"malformed JSON: {exc.msg} at column {exc.colno}", where=f"{where}:{exc.lineno}",
                            fix="repair the export, or export it again as JSON lines") from None
        except BadJson as exc:
            line = text.count("\n", 0, start) + 1
            raise UserError(f"malformed JSON: {exc.reason}", where=f"{where}:{line}",
                            fix="repair the export, or export it again as JSON lines") from None
        documents.append(json.dumps(document, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(documents).encode("utf-8") + b"\n"
