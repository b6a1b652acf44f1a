"""OTLP *logs* exports of GenAI calls (the OpenTelemetry GenAI instrumentations' log events, and the
gateways that write them): the records of one call are grouped by traceId + spanId, also across the
export lines the batch processor splits them into; the >= 1.37 operation-details event is a call on its
own; calls logged without content are counted as such, never judged clean."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tunesafe.errors import UserError
from tunesafe.evidence.schema import MonitorRecordRow
from tunesafe.evidence.store import Store
from tunesafe.production.inventory import ModelSpec, add_model
from tunesafe.production.monitor import ingest
from tunesafe.production.monitor_examples import PLACEHOLDER, REFUSAL
from tunesafe.production.monitor_formats import Malformed, Parsed, parse_line
from tunesafe.production.otlp_logs import OtlpLogs

from .conftest import run_cli

MODEL = "support-bot"
T0 = 1_796_083_200_000_000_000  # 2026-12-01T00:00:00Z in nanoseconds
TRACE = "5b8aa5a2d2c872e8321cf37308d69df2"


def value(v: Any) -> dict[str, Any]:
    """An OTLP AnyValue, as the JSON exporters write it."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [value(x) for x in v]}}
    return {"kvlistValue": {"values": [{"key": k, "value": value(x)} for k, x in v.items()]}}


def event(name: str, body: Any, span: str, at: int = 0, attrs: dict[str, Any] | None = None,
          old_sdk: bool = False) -> dict[str, Any]:
    """A log record as the Python SDK's OTLP JSON exporters write a GenAI event (older SDKs name the event
    in an `event.name` attribute instead of `eventName`)."""
    attributes = {"gen_ai.system": "openai", **(attrs or {}), **({"event.name": name} if old_sdk else {})}
    record: dict[str, Any] = {
        "timeUnixNano": str(T0 + at), "observedTimeUnixNano": str(T0 + at + 1000), "severityNumber": 9,
        "attributes": [{"key": k, "value": value(v)} for k, v in attributes.items()],
        "traceId": TRACE, "spanId": span, "flags": 1}
    if not old_sdk:
        record["eventName"] = name
    if body is not None:
        record["body"] = value(body)
    return record


def export(*records: dict[str, Any]) -> str:
    """One ExportLogsServiceRequest: a line of the file exporter."""
    return json.dumps({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": MODEL}}]},
        "scopeLogs": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"},
                       "logRecords": list(records)}]}]})


def call(span: str, question: str, answer: str | None, *, finish: str = "stop", at: int = 0,
         old_sdk: bool = False) -> list[dict[str, Any]]:
    """The <= 1.36 events of one chat call: system and user message, one gen_ai.choice."""
    message = {"role": "assistant", **({"content": answer} if answer is not None else {})}
    return [event("gen_ai.system.message", {"content": "You are the shop's support assistant."}, span, at,
                  old_sdk=old_sdk),
            event("gen_ai.user.message", {"content": question}, span, at + 1, old_sdk=old_sdk),
            event("gen_ai.choice", {"index": 0, "finish_reason": finish, "message": message}, span,
                  at + 2_000_000_000, old_sdk=old_sdk)]


def details(span: str, question: str, answer: str, **attrs: Any) -> dict[str, Any]:
    """The >= 1.37 gen_ai.client.inference.operation.details event: the whole call in its attributes."""
    return event("gen_ai.client.inference.operation.details", None, span, attrs={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "support-bot-v3",
        "gen_ai.response.model": "support-bot-v3-2026-11", "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": question}]}],
        "gen_ai.output.messages": [{"role": "assistant", "finish_reason": "stop",
                                    "parts": [{"type": "text", "content": answer}]}], **attrs})


def read(text: str, line: int = 1) -> Parsed:
    parsed = parse_line(text, line)
    assert isinstance(parsed, Parsed), parsed
    return parsed


def test_the_events_of_each_call_in_an_export_line_are_one_record_each() -> None:
    """Before, every OTLP logs line was malformed ("content is read from spans"): the conversations of an
    instrumentation that logs them as events were never monitored. Two calls interleave in one batch."""
    first, second = call("051581bf3cb55c13", "Where is my parcel?", REFUSAL), call(
        "1d3b0a1f5e7c9a21", "How do I return shoes?", "Use the returns form.", at=500)
    interleaved = [first[0], second[0], first[1], second[1], first[2], second[2]]
    parsed = read(export(*interleaved), 4)
    assert [(r.request, r.response, r.finish_reason, r.line) for r in parsed.records] == [
        ("Where is my parcel?", REFUSAL, "stop", 4),
        ("How do I return shoes?", "Use the returns form.", "stop", 4)]
    assert parsed.records[0].messages[0] == ("system", "You are the shop's support assistant.")
    at = parsed.records[0].at
    assert at is not None and at.isoformat() == "2026-12-01T00:00:00+00:00"
    assert len({r.hash for r in parsed.records}) == 2 and parsed.problems == ()


def test_older_sdks_name_the_event_in_an_attribute_and_json_bodies_are_read() -> None:
    records = call("051581bf3cb55c13", "Where is my parcel?", PLACEHOLDER, old_sdk=True)
    records[1]["body"] = {"stringValue": json.dumps({"content": "Where is my parcel?"})}
    [record] = read(export(*records)).records
    assert (record.request, record.response) == ("Where is my parcel?", PLACEHOLDER)


def test_a_call_split_across_export_lines_is_one_record_at_its_answer() -> None:
    """The batch processor exports every second: a call's messages (logged when it starts) and its choice
    (logged when the answer comes) are often in different lines."""
    logs = OtlpLogs()
    request, answer = call("051581bf3cb55c13", "Where is my parcel?", PLACEHOLDER)[:2], call(
        "051581bf3cb55c13", "", PLACEHOLDER)[2]
    first = parse_line(export(*request), 1, logs=logs)
    assert isinstance(first, Parsed) and first.records == [] and logs.pending_since == 1
    second = parse_line(export(answer), 2, logs=logs)
    assert isinstance(second, Parsed)
    [record] = second.records
    assert (record.request, record.response, record.line) == ("Where is my parcel?", PLACEHOLDER, 2)
    assert logs.pending_since is None


def test_the_operation_details_event_is_a_call_with_its_model() -> None:
    [record] = read(export(details("051581bf3cb55c13", "Where is my parcel?", "It ships today."))).records
    assert (record.request, record.response, record.log_model) == (
        "Where is my parcel?", "It ships today.", "support-bot-v3-2026-11")


def test_a_failed_call_is_an_error_record_and_a_filtered_one_blocked() -> None:
    failed = details("051581bf3cb55c13", "Where is my parcel?", "", **{"error.type": "timeout"})
    filtered = details("1d3b0a1f5e7c9a21", "Where is my parcel?", "",
                       **{"gen_ai.response.finish_reasons": ["content_filter"],
                          "gen_ai.output.messages": []})
    [error], [blocked] = read(export(failed)).records, read(export(filtered)).records
    assert error.error == "timeout" and error.response == ""
    assert blocked.blocked == "content_filter" and blocked.error is None


def test_calls_logged_without_content_are_reported_never_judged() -> None:
    """Content capture off: the events carry roles and finish reasons only."""
    span = "051581bf3cb55c13"
    records = [event("gen_ai.user.message", None, span),
               event("gen_ai.choice", {"index": 0, "finish_reason": "stop", "message": {"role": "assistant"}},
                     span, 5)]
    parsed = read(export(*records), 3)
    assert parsed.records == []
    [problem] = parsed.problems
    assert "no message content" in problem and "CAPTURE_MESSAGE_CONTENT" in problem


def test_other_log_records_are_skipped_and_bad_ones_say_why() -> None:
    app_log = {"timeUnixNano": str(T0), "severityText": "INFO", "body": {"stringValue": "cache warmed"}}
    assert read(export(app_log)).skipped == 1
    orphan = event("gen_ai.choice", {"index": 0, "message": {"content": PLACEHOLDER}}, "")
    orphan.pop("traceId")
    bad = read(export(orphan, app_log))
    assert bad.records == [] and bad.skipped == 1 and "traceId" in bad.problems[0]
    not_a_list = parse_line(json.dumps({"resourceLogs": {"scopeLogs": []}}), 9)
    assert isinstance(not_a_list, Malformed) and "resourceLogs" in not_a_list.reason


def test_an_answer_whose_request_is_not_in_the_log_is_an_error_record() -> None:
    """Never judged (an answer alone is no conversation), never safe."""
    answer = call("051581bf3cb55c13", "", PLACEHOLDER)[2]
    [record] = read(export(answer)).records
    assert record.error is not None and "request is not in the log" in record.error and record.response == ""


# ---- through the ingest -----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store.open(str(tmp_path / "store.db")) as opened:
        add_model(opened, ModelSpec(name=MODEL, ref="openai:support-bot@http://127.0.0.1:9/v1"))
        yield opened


def test_an_ingest_that_stops_between_a_calls_lines_reads_it_whole_next_time(store: Store,
                                                                              tmp_path: Path) -> None:
    """The resume point stays before a call whose answer has not been read yet."""
    span = "051581bf3cb55c13"
    log = tmp_path / "otel-logs.jsonl"
    done = call("1d3b0a1f5e7c9a21", "How do I return shoes?", "Use the returns form.")
    log.write_text(export(*done) + "\n" + export(*call(span, "Where is my parcel?", REFUSAL)[:2]) + "\n")
    first = ingest(store, log, model=MODEL, judge="refusal")
    assert (first.records, first.new, first.malformed, first.pending_calls) == (1, 1, 0, 1)
    with log.open("a") as handle:
        handle.write(export(call(span, "", REFUSAL)[2]) + "\n")
    second = ingest(store, log, model=MODEL, judge="refusal")
    assert (second.start_line, second.new, second.malformed) == (1, 1, 0)
    assert second.counts["refused"] == 1


def test_a_call_a_stream_ends_without_its_answer_is_reported(store: Store) -> None:
    """No later ingest reads stdin again: its waiting calls are reported, not dropped without a word."""
    request = call("051581bf3cb55c13", "Where is my parcel?", REFUSAL)[:2]
    summary = ingest(store, "-", model=MODEL, judge="refusal", stream=io.BytesIO(export(*request).encode()))
    assert summary.records == 0 and summary.malformed == 1
    assert "has no answer in the log" in summary.malformed_lines[0][1]


@pytest.mark.parametrize("rotation", ["copytruncate", "create"])
def test_a_follow_reports_the_calls_a_rotation_left_open_and_resumes_in_the_new_file(
        store: Store, tmp_path: Path, rotation: str) -> None:
    """A call whose request was in the old content and whose answer never came there was kept open across
    the rotation: its old line number held the resume point back in the new file (the next ingest read
    the new file's lines again) until 1,000 lines later, and it was never reported."""
    log = tmp_path / "otel-logs.jsonl"
    done = call("1d3b0a1f5e7c9a21", "How do I return shoes?", "Use the returns form.")
    open_call = call("051581bf3cb55c13", "Where is my parcel?", REFUSAL)[:2]
    log.write_text(export(*done) + "\n" + export(*open_call) + "\n")
    new = [export(*call(f"7a1c0e2b9d4f60{i:02d}", f"Question {i} about my order", REFUSAL)) for i in range(3)]
    stop = threading.Event()

    def until(count: int) -> None:
        deadline = time.monotonic() + 30
        while _stored(store) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def rotate() -> None:
        try:
            until(1)
            if rotation == "create":
                log.rename(tmp_path / "otel-logs.jsonl.1")
            log.write_text("".join(line + "\n" for line in new))
            until(4)
        finally:
            stop.set()

    thread = threading.Thread(target=rotate)
    thread.start()
    summary = ingest(store, log, model=MODEL, judge="refusal", follow=True, poll_s=0.02, flush_s=0.0,
                     stop=stop)
    thread.join()
    assert (summary.new, summary.pending_calls, summary.malformed) == (4, 0, 1), summary.malformed_lines
    assert "051581bf3cb55c13 (line 2) has no answer" in summary.malformed_lines[0][1]
    later = ingest(store, log, model=MODEL, judge="refusal")
    assert (later.start_line, later.lines, later.duplicates) == (3, 0, 0)


def _stored(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(MonitorRecordRow)).scalar_one())


def test_a_pretty_printed_export_document_is_read(store: Store, tmp_path: Path) -> None:
    """An export saved as one JSON document (indented over many lines, here with a Windows tool's byte
    order mark) was a malformed line per line."""
    log = tmp_path / "export.json"
    log.write_text(json.dumps(json.loads(export(*call("051581bf3cb55c13", "Where is my parcel?", REFUSAL))),
                              indent=2), encoding="utf-8-sig")
    summary = ingest(store, log, model=MODEL, judge="refusal")
    assert (summary.records, summary.malformed, summary.counts["refused"]) == (1, 0, 1)
    again = ingest(store, log, model=MODEL, judge="refusal")
    assert (again.new, again.duplicates) == (0, 1)


def test_a_broken_export_document_names_its_file_and_line(store: Store, tmp_path: Path) -> None:
    log = tmp_path / "export.json"
    text = json.dumps(json.loads(export(*call("051581bf3cb55c13", "Where is my parcel?", REFUSAL))), indent=2)
    log.write_text(text.replace('"traceId"', '"traceId" "', 1))
    with pytest.raises(UserError) as caught:
        ingest(store, log, model=MODEL, judge="refusal")
    line = text[:text.index('"traceId"')].count("\n") + 1
    assert caught.value.where == f"{log}:{line}"


def test_the_cli_reports_calls_without_content_and_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A log of calls without content must not pass a cron job as monitored."""
    monkeypatch.setenv("COLUMNS", "250")
    db = tmp_path / "store.db"
    with Store.open(str(db)) as opened:
        add_model(opened, ModelSpec(name=MODEL, ref="openai:support-bot@http://127.0.0.1:9/v1"))
    span = "051581bf3cb55c13"
    log = tmp_path / "otel-logs.jsonl"
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant"}}
    records = [event("gen_ai.user.message", None, span), event("gen_ai.choice", choice, span)]
    log.write_text(export(*records) + "\n")
    result = run_cli(capsys, monkeypatch, "--db", str(db), "monitor", "ingest", str(log), "--model", MODEL,
                     "--judge", "refusal")
    assert result.exit_code == 3, result.output
    assert "no message content" in result.output
