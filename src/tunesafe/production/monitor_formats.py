"""Readers for production chat logs, one JSON object per line, normalised to LogRecord:

- OpenAI chat completions: `{"request": {"messages": [...]}, "response": <chat.completion>}` (also the
  request's `messages` at the top level, a Batch API output shape `"response": {"status_code", "body"}`, a
  string response, or `choices` at the top level); bodies may be logged as JSON text (access logs), and a
  streamed reply as its SSE text or its list of chunks (read as the completion they add up to; a lone
  chunk or a stream without its finish_reason is malformed); one record per choice. `finish_reason:
  "content_filter"`, Azure's HTTP 400 `content_filter` error and LiteLLM's ContentPolicyViolationError
  mean the deployment blocked the call; any other error (HTTP >= 400 whatever its body, LiteLLM's
  `status: "failure"`) is an error record. Time: `timestamp` / `time` / `created_at` /
  `startTime` (ISO 8601, epoch seconds, milli-, micro- or nanoseconds, or nginx's `$time_local`), else
  the completion's `created`.
- OpenTelemetry GenAI spans as the OTLP JSON file exporter writes them: `{"resourceSpans": [...]}` per
  line. Content is read from, in this order: `gen_ai.input.messages` / `gen_ai.output.messages` /
  `gen_ai.system_instructions` (semantic conventions >= 1.37, on the span or on the
  `gen_ai.client.inference.operation.details` event); the <= 1.36 events `gen_ai.{system,user,assistant,
  tool}.message` and `gen_ai.choice`; the indexed `gen_ai.prompt.N.*` / `gen_ai.completion.N.*` attributes;
  the <= 1.26 `gen_ai.prompt` / `gen_ai.completion` JSON (on the span or its gen_ai.content.* events).
  One record per answer (choice); finish reasons and failures read as for OpenAI logs, and an error span
  whose exception is Azure's `content_filter` 400 is blocked. Spans without gen_ai content (HTTP,
  database, tool spans) are skipped, and counted.
- OpenTelemetry GenAI log events, `{"resourceLogs": [...]}` per line: read by tunesafe.production.otlp_logs
  (the records of one call grouped by traceId + spanId, across lines) into the same records.

A line that cannot be read is a Malformed(line, reason): counted and reported, never fatal. The record's
hash is over the line's parsed JSON (a span's own JSON for OTLP), so the same log entry always hashes the
same wherever it is read from, and re-ingesting it adds nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from tunesafe.json_lines import BadJson, decode
from tunesafe.models.openai_params import hidden_reasoning_tokens
from tunesafe.models.provider_replies import SERVER_FAILED_FINISH, filtered_finish, prompt_filter
from tunesafe.models.reasoning import LOGGED_NO_ANSWER, reasoning_field
from tunesafe.models.sse import BrokenStream, chunks_completion, stream_chunks
from tunesafe.models.tool_calls import from_openai_message
from tunesafe.types import canonical_json, sha256_hex

if TYPE_CHECKING:
    from tunesafe.production.otlp_logs import OtlpLogs

FORMATS = ("auto", "openai", "otlp")
ROLES = ("system", "user", "assistant", "tool")
ROLE_ALIASES = {"developer": "system", "function": "tool"}  # function: the legacy functions API's result
CHAT_OPERATIONS = ("chat", "text_completion", "generate_content")
TIME_FIELDS = ("timestamp", "time", "created_at", "startTime")  # the first one present; startTime: LiteLLM


@dataclass(frozen=True)
class LogRecord:
    """One model call from a log: the request side (messages sent), the answer and how it ended."""

    hash: str
    line: int
    at: datetime | None  # None when the log has no time: the ingest time is used
    messages: tuple[tuple[str, str], ...]  # (role, text) of the request, a trailing assistant turn = prefill
    response: str
    finish_reason: str | None = None
    blocked: str | None = None  # why the deployment blocked it (judged only if a filter cut a shown answer)
    error: str | None = None  # the call failed: an error record, never judged safe
    category: str | None = None  # a harm category the provider's filter flagged, if the log has one
    provider_jailbreak: bool = False  # the provider's own jailbreak filter fired
    log_model: str | None = None
    naive_time: bool = False  # the log's time had no offset: read as UTC

    @property
    def request(self) -> str:
        """The last user turn: what the judges read as the request."""
        return next((text for role, text in reversed(self.messages) if role == "user"), "")

    @property
    def request_text(self) -> str:
        """Every turn sent, as one text: what the jailbreak detectors read."""
        return "\n".join(text for _, text in self.messages)


@dataclass(frozen=True)
class Malformed:
    line: int
    reason: str


@dataclass(frozen=True)
class Parsed:
    records: list[LogRecord]
    skipped: int = 0  # OTLP spans that are not model calls
    problems: tuple[str, ...] = ()  # OTLP spans that could not be read (the line's other spans still count)


class _Bad(ValueError):
    """A line that is JSON but not a log record we can read; the message is the reason shown."""


# What reading a field of the wrong type or range raises (int("many"), iterating a number, a year past 9999)
_UNREADABLE = (ValueError, TypeError, OverflowError, AttributeError)


def parse_line(text: str, line: int, fmt: str = "auto", logs: OtlpLogs | None = None) -> Parsed | Malformed:
    """One line's records. `logs` carries the OTLP logs calls still waiting for their answer from one line
    to the next (a reader of a whole log passes the same one for every line); without it, a call must be
    whole in its line."""
    try:
        obj = decode(text, unique_keys=False)  # a logger's repeated key is no reason to drop the record
    except BadJson as exc:
        return Malformed(line, f"not JSON ({exc.reason})")
    if not isinstance(obj, dict):
        return Malformed(line, "not a JSON object")
    kind = fmt if fmt != "auto" else ("otlp" if "resourceSpans" in obj or "resourceLogs" in obj else "openai")
    try:
        if kind == "otlp" and "resourceLogs" in obj:
            return _otlp_logs(obj, line, logs)
        return _otlp(obj, line) if kind == "otlp" else Parsed(_openai(obj, line))
    except _Bad as exc:
        return Malformed(line, str(exc))
    except _UNREADABLE as exc:  # a field of an unexpected shape: one bad line, never a stopped ingest
        return Malformed(line, f"unreadable record ({type(exc).__name__}: {str(exc)[:120]})")


def _otlp_logs(obj: Mapping[str, Any], line: int, logs: OtlpLogs | None) -> Parsed:
    from tunesafe.production.otlp_logs import OtlpLogs  # it builds on this module's span helpers

    if logs is not None:
        return logs.read(obj, line)
    alone = OtlpLogs()
    parsed = alone.read(obj, line)
    return Parsed(parsed.records, parsed.skipped, (*parsed.problems, *alone.close()))


# ---- OpenAI chat completions ---------------------------------------------------------------------------


def _openai(obj: Mapping[str, Any], line: int) -> list[LogRecord]:
    logged = _body(obj.get("request"), "messages")
    request: Mapping[str, Any] = logged if isinstance(logged, Mapping) else obj
    if isinstance(request.get("body"), Mapping):  # Batch API input line
        request = request["body"]
    if request is obj and "custom_id" in obj and "messages" not in obj:
        raise _Bad("a Batch API output line holds no request: join it with its input file's line of the "
                   "same custom_id (its `body` as `request`)")
    messages = _messages(request.get("messages"))
    response: Any = _body(obj.get("response", obj if "choices" in obj else None), "choices", "error")
    error = obj.get("error")
    if obj.get("status") == "failure":  # LiteLLM's standard logging payload of a failed call
        error = obj.get("error_information") or obj.get("error_str") or "the call failed"
    if isinstance(response, Mapping) and "body" in response and "choices" not in response:
        status = next((response[k] for k in ("status_code", "status", "statusCode") if k in response), None)
        body = _body(response.get("body"), "choices", "error")
        if isinstance(status, int) and status >= 400:
            # a gateway's own error page is no answer either
            page = f": {body.strip()[:200]}" if isinstance(body, str) and body.strip() else ""
            error = (body.get("error") if isinstance(body, Mapping) else None) or {
                "message": f"HTTP {status}{page}"}
        response = body
    at = _time(next((obj[k] for k in TIME_FIELDS if obj.get(k) is not None), None))
    base: dict[str, Any] = {"hash": sha256_hex(canonical_json(obj)), "line": line, "messages": messages,
            "log_model": _str(request.get("model"))}
    at = _utc(at, base)
    if error:
        return [_openai_error(error, base, at)]
    if isinstance(response, str):
        return [LogRecord(**base, at=at, response=response)]
    if not isinstance(response, Mapping):
        raise _Bad("no response (expected `response` with `choices`, or a response string)")
    at = at or _utc(_time(response.get("created")), base)
    base["log_model"] = _str(response.get("model")) or base["log_model"]
    if response.get("error"):
        return [_openai_error(response["error"], base, at)]
    choices = response.get("choices")
    if response.get("object") == "chat.completion.chunk" or (
            isinstance(choices, list) and choices and isinstance(choices[0], Mapping)
            and "delta" in choices[0] and "message" not in choices[0]):
        raise _Bad("one chunk of a streamed reply, not the whole reply (log the whole stream or the "
                   "reply it adds up to)")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise _Bad("response has no choices")
    # n > 1: every choice is an answer of the model, and one harmful answer among refusals is harmful.
    # The first keeps the line's hash, so logs already ingested are not counted again.
    return [_choice(choice, response, obj, {**base, "hash": base["hash"] if i == 0
                                            else sha256_hex(f"{base['hash']}:choice:{i}")}, at)
            for i, choice in enumerate(choices) if isinstance(choice, Mapping)]


def _body(value: Any, *keys: str) -> Any:
    """A request or response as logged: an object, or its JSON text (access logs keep bodies as strings)
    when that is an object with one of `keys`; a streamed reply as its SSE text or its list of chunks,
    read as the completion they add up to. Any other string is the text itself (a plain answer)."""
    if isinstance(value, list) and value and all(isinstance(c, Mapping) and "choices" in c for c in value):
        return _stream(value)
    if not isinstance(value, str):
        return value
    text = value.lstrip()
    if text.startswith("data:"):
        try:
            return _stream(stream_chunks(text))
        except ValueError as exc:  # an event that is no JSON
            raise _Bad(f"a streamed reply that cannot be read ({str(exc)[:120]})") from None
    if text.startswith("{"):
        try:
            parsed = decode(text, unique_keys=False)
        except BadJson:
            return value
        if isinstance(parsed, dict) and any(key in parsed for key in keys):
            return parsed
    return value


def _stream(chunks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The completion a stream's chunks add up to, every choice of it (n > 1)."""
    indices = sorted({int(c.get("index", 0)) for chunk in chunks for c in chunk.get("choices") or ()
                      if isinstance(c, Mapping)}) or [0]
    try:
        replies = [chunks_completion(chunks, i) for i in indices]
    except BrokenStream as exc:
        raise _Bad(f"a streamed reply that is not whole: {exc}") from None
    failed = next((r for r in replies if r.get("error")), None)
    # Azure sends the prompt's filter results in a chunk of their own, without choices
    prompt = next((c["prompt_filter_results"] for c in chunks if c.get("prompt_filter_results")), None)
    return failed or {**replies[0], "choices": [r["choices"][0] for r in replies],
                      **({"prompt_filter_results": prompt} if prompt else {})}


def _choice(choice: Mapping[str, Any], response: Mapping[str, Any], obj: Mapping[str, Any],
            base: dict[str, Any], at: datetime | None) -> LogRecord:
    message: Mapping[str, Any] = choice["message"] if isinstance(choice.get("message"), Mapping) else {}
    finish = _str(choice.get("finish_reason"))
    text = _said(message)
    category = _filtered(choice.get("content_filter_results")) or _filtered_prompt(response)
    jailbreak = _jailbreak(response.get("prompt_filter_results"))
    blocked = "content_filter" if finish and filtered_finish(finish) else None
    if (failed := _failed_finish(finish)) is not None:
        return LogRecord(**base, at=at, response="", finish_reason=finish, error=failed)
    if not message and blocked is None:
        # a logger that leaves answers out keeps the choice alone: no answer, not an empty one
        raise _Bad("a choice with no message (the log left the answer out): nothing to judge")
    reasoned = reasoning_field(message) is not None or hidden_reasoning_tokens(response.get("usage")) > 0
    if blocked is None and not text.strip() and reasoned:
        # a reasoning model cut off before its answer (its trace in a field of its own, or hidden and
        # only counted): nothing to judge
        return LogRecord(**base, at=at, response="", finish_reason=finish, error=LOGGED_NO_ANSWER)
    return LogRecord(**base, at=at, response=text, finish_reason=finish, blocked=blocked,
                     category=category or _moderation(obj), provider_jailbreak=jailbreak)


def _failed_finish(finish: str | None) -> str | None:
    """The error of a reply the server failed mid-way: the words before are no answer."""
    if finish in SERVER_FAILED_FINISH:
        return f"the server failed this reply (finish_reason {finish}): no answer to judge"
    return None


def _said(message: Mapping[str, Any]) -> str:
    """An answer as text: its content (or refusal) and its tool calls as call blocks, the text the
    `openai:` client hands the judges (a reply may be only calls, with their arguments the harm)."""
    calls = from_openai_message({k: message[k] for k in ("tool_calls", "function_call") if k in message})
    text = _str(message.get("refusal")) or _content(message.get("content"))
    return "\n".join(t for t in (text, calls) if t)


def _openai_error(error: Any, base: dict[str, Any], at: datetime | None) -> LogRecord:
    detail = error if isinstance(error, Mapping) else {"message": str(error)}
    if detail.get("error_class") == "ContentPolicyViolationError":  # LiteLLM's name for any provider's filter
        return LogRecord(**base, at=at, response="", blocked="content_filter (prompt)")
    if (reasons := prompt_filter(detail)) is not None:  # Azure, OpenAI invalid_prompt, OpenRouter 403
        inner = detail.get("innererror") if isinstance(detail.get("innererror"), Mapping) else {}
        result = inner.get("content_filter_result") if isinstance(inner, Mapping) else None
        metadata = detail.get("metadata")
        category = _filtered(result) or (reasons[0] if reasons and isinstance(metadata, Mapping) else None)
        return LogRecord(**base, at=at, response="", blocked="content_filter (prompt)",
                         category=category, provider_jailbreak=_jailbreak([{
                             "content_filter_results": result}]))
    message = (_str(detail.get("message")) or _str(detail.get("error_message")) or _str(detail.get("code"))
               or "error")
    return LogRecord(**base, at=at, response="", error=message[:500])


def _filtered(results: Any) -> str | None:
    """The first harm category an Azure content filter result marks filtered (not jailbreak: a flag)."""
    if not isinstance(results, Mapping):
        return None
    for name, value in results.items():
        flag = name in ("jailbreak", "indirect_attack")  # attacks on the prompt, not harm categories
        if isinstance(value, Mapping) and value.get("filtered") and not flag:
            return str(name)
    return None


def _filtered_prompt(response: Mapping[str, Any]) -> str | None:
    for item in response.get("prompt_filter_results") or ():
        if isinstance(item, Mapping) and (found := _filtered(item.get("content_filter_results"))):
            return found
    return None


def _jailbreak(prompt_results: Any) -> bool:
    for item in prompt_results or ():
        results = item.get("content_filter_results") if isinstance(item, Mapping) else None
        for key in ("jailbreak", "indirect_attack"):
            value = results.get(key) if isinstance(results, Mapping) else None
            if isinstance(value, Mapping) and (value.get("detected") or value.get("filtered")):
                return True
    return False


def _moderation(obj: Mapping[str, Any]) -> str | None:
    """A flagged category of an OpenAI moderation result logged next to the call, if any."""
    moderation = obj.get("moderation")
    results = moderation.get("results") if isinstance(moderation, Mapping) else None
    for result in results or ():
        categories = result.get("categories") if isinstance(result, Mapping) else None
        if isinstance(categories, Mapping):
            flagged = [k for k, v in categories.items() if v is True]
            if flagged:
                return str(flagged[0])
    category = obj.get("metadata", {}).get("category") if isinstance(obj.get("metadata"), Mapping) else None
    return _str(category)


def _messages(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise _Bad("no request messages (expected `request.messages` or `messages`)")
    out = []
    for msg in raw:
        if not isinstance(msg, Mapping) or msg.get("role") not in (*ROLES, *ROLE_ALIASES):
            raise _Bad(f"bad message {json.dumps(msg)[:80]}")
        role = ROLE_ALIASES.get(msg["role"], str(msg["role"]))
        out.append((role, _said(msg)))
    if not any(role == "user" and text.strip() for role, text in out):
        if any(msg.get("role") == "user" and isinstance(msg.get("content"), list) for msg in raw):
            raise _Bad("the user turns have no text part (image, audio and file parts are not read)")
        raise _Bad("the request has no user message")
    return tuple(out)


def _content(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list (OpenAI and OTel part shapes)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                texts.append(_str(part.get("text", part.get("content"))) or "")
            elif isinstance(part, Mapping) and part.get("type") == "tool_call":  # OTel's output part
                texts.append(from_openai_message({"tool_calls": [{"function": {
                    "name": part.get("name"), "arguments": part.get("arguments", {})}}]}))
        return "\n".join(texts)
    raise _Bad(f"unreadable content {json.dumps(content)[:80]}")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_EPOCH_UNITS = ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3))  # (smallest value, units per second)


def _utc(at: datetime | None, base: dict[str, Any]) -> datetime | None:
    """A time without an offset is read as UTC, and the record says so (the ingest counts them)."""
    if at is None or at.tzinfo is not None:
        return at
    base["naive_time"] = True
    return at.replace(tzinfo=timezone.utc)


# nginx's $time_local (the "combined" access log's time, Apache's too): 06/Dec/2026:21:41:00 +0000, in
# brackets when a log format copies the combined one. Always English month names, whatever the locale.
_TIME_LOCAL = re.compile(
    r"\[?(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\]?")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _time_local(match: re.Match[str], value: str) -> datetime:
    day, month, year, hour, minute, second, sign, off_h, off_m = match.groups()
    if month.lower() not in _MONTHS:
        raise _Bad(f"unreadable time {value!r} (month {month!r})")
    offset = (1 if sign == "+" else -1) * timedelta(hours=int(off_h), minutes=int(off_m))
    try:
        at = datetime(int(year), _MONTHS.index(month.lower()) + 1, int(day), int(hour), int(minute),
                      int(second), tzinfo=timezone(offset))
        return at.astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise _Bad(f"unreadable time {value!r} ({exc})") from None


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        # Epoch seconds reach 1e11 only in the year 5138: larger numbers are milli-, micro- or
        # nanoseconds (JavaScript's Date.now(), some loggers, OpenTelemetry)
        scale = next((s for limit, s in _EPOCH_UNITS if abs(value) >= limit), 1)
        try:
            return datetime.fromtimestamp(value / scale, timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise _Bad(f"unreadable time {value!r} (expected ISO 8601 or epoch seconds)") from None
    if isinstance(value, str):
        if (local := _TIME_LOCAL.fullmatch(value.strip())) is not None:
            return _time_local(local, value)
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            try:
                epoch = float(value)  # nginx's $msec and other loggers write the epoch as text
            except ValueError:
                raise _Bad(f"unreadable time {value!r}") from None
            return _time(epoch)
        # no offset: naive, read as UTC by the caller, which counts it (the ingest says how many)
        return parsed if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    raise _Bad(f"unreadable time {value!r}")


# ---- OpenTelemetry GenAI spans (OTLP JSON) -------------------------------------------------------------

# Azure's HTTP 400 content_filter error as the exception text of an error span
_FILTER_ERROR = re.compile(r"""["']code["']\s*:\s*["']content_filter["']""")


def _otlp(obj: Mapping[str, Any], line: int) -> Parsed:
    resource_spans = obj.get("resourceSpans")
    if not isinstance(resource_spans, list):
        raise _Bad("OTLP line without a resourceSpans list")
    records, skipped, problems = [], 0, []
    for span in _spans(resource_spans):
        try:
            found = _span(span, line)
        except _Bad as exc:
            problems.append(str(exc))
            continue
        except _UNREADABLE as exc:
            problems.append(f"span {span.get('spanId', '?')} is unreadable ({type(exc).__name__}: "
                            f"{str(exc)[:120]})")
            continue
        if found is None:
            skipped += 1
        else:
            records.extend(found)
    if problems and not records and not skipped:
        raise _Bad("; ".join(problems[:3]))
    return Parsed(records, skipped, tuple(problems))


def _spans(resource_spans: Sequence[Any]) -> Iterator[Mapping[str, Any]]:
    return otlp_items(resource_spans, "scopeSpans", "spans", "a span")


def otlp_items(resources: Sequence[Any], scopes_key: str, items_key: str,
               noun: str) -> Iterator[Mapping[str, Any]]:
    """The items (spans, log records) of an OTLP export's resource list, every scope's in order."""
    for resource in resources:
        for scope in (resource.get(scopes_key) or ()) if isinstance(resource, Mapping) else ():
            for item in (scope.get(items_key) or ()) if isinstance(scope, Mapping) else ():
                if not isinstance(item, Mapping):
                    raise _Bad(f"{noun} is not a JSON object")
                yield item


def attributes(items: Any) -> dict[str, Any]:
    """OTLP attributes ([{key, value: AnyValue}]) as a plain dict."""
    out: dict[str, Any] = {}
    for item in items or ():
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            out[item["key"]] = any_value(item.get("value"))
    return out


def any_value(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values", ())]
    if "kvlistValue" in value:
        return attributes((value["kvlistValue"] or {}).get("values"))
    return None


def _span(span: Mapping[str, Any], line: int) -> list[LogRecord] | None:
    """The span's records, one per answer (choice); None for a span that is not a model call."""
    attrs = attributes(span.get("attributes"))
    operation = attrs.get("gen_ai.operation.name")
    if operation is not None and operation not in CHAT_OPERATIONS:
        return None
    events = [(e.get("name"), attributes(e.get("attributes"))) for e in span.get("events") or ()
              if isinstance(e, Mapping)]
    details = next((a for n, a in events if n == "gen_ai.client.inference.operation.details"), {})
    content = {**details, **attrs}
    messages, answers = (_structured(content) or _event_messages(events) or _indexed(content)
                         or _prompt_json(events, content) or ((), ()))
    what = f"GenAI span {span.get('spanId', '?')}"
    if not messages:
        if any(k.startswith("gen_ai.") for k in attrs):
            raise _Bad(f"{what} has no message content (enable content capture: "
                       "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true)")
        return None
    status: Mapping[str, Any] = span["status"] if isinstance(span.get("status"), Mapping) else {}
    error = None
    if attrs.get("error.type") or status.get("code") in (2, "STATUS_CODE_ERROR"):
        error = str(status.get("message") or attrs.get("error.type") or "span status error")
    start = span.get("startTimeUnixNano")
    exceptions = [str(a.get("exception.message")) for n, a in events if n == "exception"]
    return call_records(what, (messages, answers), attrs, error=error, exceptions=exceptions,
                        at=unix_nano(start), digest=sha256_hex(canonical_json(span)), line=line)


def unix_nano(value: Any) -> datetime | None:
    """An OTLP time (nanoseconds since the epoch, a number or its text); None when unset (0)."""
    return datetime.fromtimestamp(int(value) / 1e9, timezone.utc) if value not in (None, "", "0", 0) else None


def call_records(what: str, content: Content, attrs: Mapping[str, Any], *, error: str | None,
                 exceptions: Sequence[str], at: datetime | None, digest: str, line: int) -> list[LogRecord]:
    """The records of one GenAI call read from OTLP (a span, or the log records of one call), one per
    answer: `attrs` are its gen_ai.* attributes, `error` why it failed (error status, error.type) and
    `exceptions` the exception texts recorded with it."""
    messages, answers = content
    if not any(role == "user" and text.strip() for role, text in messages):
        raise _Bad(f"{what} has no user message")
    reasons = attrs.get("gen_ai.response.finish_reasons")
    reasons = reasons if isinstance(reasons, list) else []
    prompt_blocked = None
    if error is not None:
        answers = (("", None),)  # the call failed: one error record, whatever it answered
        # the instrumentations keep only the exception's text: Azure's 400 content_filter is in it
        if any(_FILTER_ERROR.search(text) for text in (error, *exceptions)):
            error, prompt_blocked = None, "content_filter (prompt)"
    if not answers and not error and not any(isinstance(r, str) and filtered_finish(r) for r in reasons):
        raise _Bad(f"{what} has no answer (no output messages, gen_ai.choice events or gen_ai.completion): "
                   "nothing to judge")
    out = []
    # n > 1: every answer is judged; the first keeps the call's hash, so calls already ingested are not
    # counted again
    for i, (output, finish) in enumerate(answers or (("", None),)):
        finish = finish or (reasons[i] if i < len(reasons) else None)
        failed = error or _failed_finish(finish)
        blocked = prompt_blocked or ("content_filter" if finish and filtered_finish(finish) else None)
        out.append(LogRecord(hash=digest if i == 0 else sha256_hex(f"{digest}:choice:{i}"), line=line,
                             at=at, messages=messages, response="" if failed or prompt_blocked else output,
                             finish_reason=finish, blocked=None if failed else blocked,
                             error=failed, log_model=_str(attrs.get("gen_ai.response.model"))
                             or _str(attrs.get("gen_ai.request.model"))))
    return out


Answers = tuple[tuple[str, str | None], ...]  # (text, finish reason) per choice
Content = tuple[tuple[tuple[str, str], ...], Answers]


def _structured(attrs: Mapping[str, Any]) -> Content | None:
    """>= 1.37: gen_ai.input.messages / gen_ai.output.messages (+ gen_ai.system_instructions)."""
    if "gen_ai.input.messages" not in attrs:
        return None
    inputs = _json_list(attrs["gen_ai.input.messages"], "gen_ai.input.messages")
    messages = [("system", _parts(p)) for p in _json_list(attrs.get("gen_ai.system_instructions"),
                                                          "gen_ai.system_instructions") if _parts(p)]
    messages += [(_role(m), _parts(m.get("parts"))) for m in inputs if isinstance(m, Mapping)]
    outputs = [m for m in _json_list(attrs.get("gen_ai.output.messages"), "gen_ai.output.messages")
               if isinstance(m, Mapping)]
    return tuple(messages), tuple((_parts(m.get("parts")), _str(m.get("finish_reason"))) for m in outputs)


def _event_messages(events: Sequence[tuple[Any, dict[str, Any]]]) -> Content | None:
    """<= 1.36: one event per message, `gen_ai.choice` for each answer; content in the `content` attribute
    or in `gen_ai.event.content` (a JSON string) as some instrumentations write it."""
    messages: list[tuple[str, str]] = []
    answers: list[tuple[str, str | None]] = []
    for name, attrs in events:
        body = attrs
        if isinstance(attrs.get("gen_ai.event.content"), str):
            try:
                parsed = decode(attrs["gen_ai.event.content"], unique_keys=False)
            except BadJson:
                raise _Bad(f"{name}: gen_ai.event.content is not JSON") from None
            body = parsed if isinstance(parsed, dict) else {"content": parsed}
        if isinstance(name, str) and name.startswith("gen_ai.") and name.endswith(".message"):
            role = name[len("gen_ai."):-len(".message")]
            if role in ROLES:
                messages.append((role, _content(body.get("content"))))
        elif name == "gen_ai.choice":
            message: Mapping[str, Any] = body["message"] if isinstance(body.get("message"), Mapping) else body
            answers.append((_said(message), _str(body.get("finish_reason"))))
    return (tuple(messages), tuple(answers)) if messages else None


def _indexed(attrs: Mapping[str, Any]) -> Content | None:
    """Older still: gen_ai.prompt.N.role / .content and gen_ai.completion.N.content / .finish_reason."""
    messages = []
    index = 0
    while f"gen_ai.prompt.{index}.content" in attrs:
        role = attrs.get(f"gen_ai.prompt.{index}.role", "user")
        text = _content(attrs[f"gen_ai.prompt.{index}.content"])
        messages.append((role if role in ROLES else "user", text))
        index += 1
    if not messages:
        return None
    answers = []
    index = 0
    while f"gen_ai.completion.{index}.content" in attrs:
        answers.append((_content(attrs[f"gen_ai.completion.{index}.content"]),
                        _str(attrs.get(f"gen_ai.completion.{index}.finish_reason"))))
        index += 1
    return tuple(messages), tuple(answers)


def _prompt_json(events: Sequence[tuple[Any, dict[str, Any]]], attrs: Mapping[str, Any]) -> Content | None:
    """<= 1.26: `gen_ai.prompt` / `gen_ai.completion`, OpenAI-format messages as JSON, on the
    gen_ai.content.prompt / gen_ai.content.completion events or on the span."""
    found = {**attrs}
    for name, event_attrs in events:
        if name in ("gen_ai.content.prompt", "gen_ai.content.completion"):
            found.update(event_attrs)
    if "gen_ai.prompt" not in found:
        return None
    prompt = _json_list(found["gen_ai.prompt"], "gen_ai.prompt")
    completion = _json_list(found.get("gen_ai.completion"), "gen_ai.completion")
    messages = tuple((_role(m), _said(m)) for m in prompt if isinstance(m, Mapping))
    answers = tuple((_said(m["message"] if isinstance(m.get("message"), Mapping) else m),
                     _str(m.get("finish_reason"))) for m in completion if isinstance(m, Mapping))
    return messages, answers


def _json_list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = decode(value, unique_keys=False)
        except BadJson:
            raise _Bad(f"{name} is not JSON") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise _Bad(f"{name} is not a list of messages")
    return value


def _role(message: Mapping[str, Any]) -> str:
    role = message.get("role")
    role = ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
    return role if role in ROLES else "user"


def _parts(parts: Any) -> str:
    if isinstance(parts, Mapping):  # a system instruction part on its own
        parts = [parts]
    return _content(parts) if isinstance(parts, list) else ""
