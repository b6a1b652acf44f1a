"""The log readers on the shapes real logs have: OpenAI chat completions (several wrappers, refusals,
provider content filters, errors) and OTLP JSON GenAI spans in the three content forms; bad lines are
Malformed with a reason, never an exception."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tunesafe.production.monitor_examples import (
    PLACEHOLDER,
    REFUSAL,
    example_log,
    generated_log,
    openai_line,
    otlp_log,
    write_examples,
)
from tunesafe.production.monitor_formats import LogRecord, Malformed, Parsed, parse_line
from tunesafe.types import canonical_json, sha256_hex

EXAMPLES = Path(__file__).parents[2] / "examples" / "production"
USER = [{"role": "user", "content": "Where is my parcel?"}]


def one(obj: Any, fmt: str = "auto") -> LogRecord:
    parsed = parse_line(json.dumps(obj), 7, fmt)
    assert isinstance(parsed, Parsed), parsed
    [record] = parsed.records
    return record


def test_openai_request_response_pair() -> None:
    rec = one(openai_line(3, USER, "It ships tomorrow."))
    assert rec.request == "Where is my parcel?" and rec.response == "It ships tomorrow."
    assert rec.messages[0][0] == "system" and rec.line == 7 and rec.log_model == "support-bot"
    assert rec.at == datetime.fromtimestamp(1_796_083_200 + 3 * 37, timezone.utc)
    assert rec.blocked is None and rec.error is None


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
def test_epoch_times_in_seconds_or_finer_units(scale: int) -> None:
    """JavaScript's Date.now() and many loggers write epoch milliseconds; every such line was malformed."""
    seconds = 1_796_083_200
    rec = one({"messages": USER, "response": "It ships tomorrow.", "timestamp": seconds * scale})
    assert rec.at == datetime.fromtimestamp(seconds, timezone.utc)


def test_openai_other_wrappers_and_content_parts() -> None:
    top_level = {"messages": [{"role": "developer", "content": "Be brief."},
                              {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                 "choices": [{"message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
                 "timestamp": "2026-12-02T10:00:00Z"}
    rec = one(top_level)
    assert rec.messages == (("system", "Be brief."), ("user", "Hi")) and rec.response == "Hello"
    assert rec.at == datetime(2026, 12, 2, 10, tzinfo=timezone.utc)
    assert one({"request": {"messages": USER}, "response": "plain text"}).response == "plain text"
    batch = {"custom_id": "r-1", "request": {"body": {"messages": USER}},
             "response": {"status_code": 200, "body": openai_line(1, USER, "ok")["response"]}}
    assert one(batch).response == "ok"


def test_openai_refusal_field_is_the_answer() -> None:
    line = openai_line(1, USER, None)
    line["response"]["choices"][0]["message"]["refusal"] = REFUSAL
    assert one(line).response == REFUSAL


def test_a_reasoning_model_cut_off_before_its_answer_is_an_error_record() -> None:
    line = openai_line(1, USER, None)
    line["response"]["choices"][0].update(finish_reason="length")
    line["response"]["choices"][0]["message"]["reasoning_content"] = "The user asks where the parcel is"
    rec = one(line)
    assert rec.error is not None and "no answer" in rec.error and rec.response == ""


def test_an_answer_crowded_out_by_hidden_reasoning_is_an_error_record() -> None:
    """OpenAI's reasoning models return no trace, only its token count: an empty answer after it is no
    answer to judge (judged, it would count as an empty reply)."""
    line = openai_line(1, USER, "")
    line["response"]["choices"][0].update(finish_reason="length")
    line["response"]["usage"] = {"prompt_tokens": 9, "completion_tokens": 64,
                                 "completion_tokens_details": {"reasoning_tokens": 64}}
    rec = one(line)
    assert rec.error is not None and "no answer" in rec.error and rec.response == ""
    line["response"]["usage"]["completion_tokens_details"]["reasoning_tokens"] = 0
    assert one(line).error is None


def test_provider_filters_block_and_flag() -> None:
    completion = one(openai_line(1, USER, None, finish="content_filter",
                                 filters={"violence": {"filtered": True, "severity": "medium"}}))
    assert completion.blocked == "content_filter" and completion.category == "violence"
    azure_400 = {"request": {"messages": USER}, "error": {
        "code": "content_filter", "status": 400, "message": "filtered",
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
            "hate": {"filtered": False, "severity": "safe"},
            "jailbreak": {"filtered": True, "detected": True}}}}}
    prompt = one(azure_400)
    assert prompt.blocked == "content_filter (prompt)" and prompt.provider_jailbreak
    assert prompt.category is None  # a jailbreak is a flag, not a harm category


@pytest.mark.parametrize("finish", ["SAFETY", "PROHIBITED_CONTENT"])
def test_gemini_safety_finish_reasons_are_blocked(finish: str) -> None:
    """Gemini's OpenAI endpoint passes its own finish reasons through (not content_filter)."""
    rec = one(openai_line(1, USER, "", finish=finish))
    assert rec.blocked == "content_filter" and rec.error is None


@pytest.mark.parametrize("finish", ["abort", "insufficient_system_resource"])
def test_a_reply_the_server_failed_is_an_error_record_not_an_answer(finish: str) -> None:
    """vLLM's engine abort, DeepSeek out of resources: the words before the cut are no answer."""
    rec = one(openai_line(1, USER, "Sure, here is", finish=finish))
    assert rec.error is not None and finish in rec.error and rec.blocked is None


@pytest.mark.parametrize("error", [
    {"message": "Invalid prompt: your prompt was flagged as potentially violating our usage policy.",
     "type": "invalid_request_error", "code": "invalid_prompt"},
    {"code": 403, "message": "Input flagged", "metadata": {"reasons": ["violence"], "flagged_input": "..."}},
])
def test_provider_prompt_filters_logged_as_errors_are_blocked(error: dict[str, Any]) -> None:
    """OpenAI's invalid_prompt (reasoning models) and OpenRouter's moderation 403 refused the prompt."""
    rec = one({"request": {"messages": USER}, "error": error})
    assert rec.blocked == "content_filter (prompt)" and rec.error is None


def test_errors_are_error_records_not_answers() -> None:
    failed = one(openai_line(1, USER, None, error={"code": "server_error", "message": "boom"}))
    assert failed.error == "boom" and failed.response == ""
    http = one({"request": {"messages": USER}, "response": {"status_code": 500, "body": {"error": {
        "message": "upstream"}}}})
    assert http.error == "upstream"


@pytest.mark.parametrize(("text", "reason"), [
    ('{"request": ', "not JSON"),
    # json raises RecursionError / a plain ValueError here: the whole ingest stopped with a traceback
    ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ('{"request": ' + "9" * 5_000 + "}", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"request": {"messages": []}, "response": "x"}', "no request messages"),
    ('{"request": {"messages": [{"role": "assistant", "content": "x"}]}, "response": "x"}',
     "no user message"),
    ('{"request": {"messages": [{"role": "user", "content": "x"}]}}', "no response"),
    ('{"messages": [{"role": "user", "content": "x"}], "response": [{"role": "assistant", "content": "y"}]}',
     "no response"),  # a list, but of messages, not of stream chunks
    ('{"request": {"messages": [{"role": "user", "content": "x"}]}, "response": {"choices": []}}',
     "no choices"),
    ('{"messages": [{"role": "user", "content": "x"}], "response": "y", "timestamp": "yesterday"}',
     "unreadable time"),
    ('{"resourceSpans": {}}', "resourceSpans"),
])
def test_malformed_lines_say_why(text: str, reason: str) -> None:
    parsed = parse_line(text, 12)
    assert isinstance(parsed, Malformed) and parsed.line == 12 and reason in parsed.reason


def test_same_entry_same_hash_wherever_read() -> None:
    line = openai_line(5, USER, "ok")
    assert one(line).hash == one(json.loads(json.dumps(line, indent=2))).hash
    assert one(line).hash != one(openai_line(6, USER, "ok")).hash


def test_otlp_spans_in_all_three_content_forms() -> None:
    records: list[LogRecord] = []
    skipped = 0
    for number, line in enumerate(otlp_log(), 1):
        parsed = parse_line(line, number)
        assert isinstance(parsed, Parsed)
        records += parsed.records
        skipped += parsed.skipped
    assert skipped == 1  # the HTTP span
    ok = [r for r in records if r.error is None]
    assert len(ok) == 13 and all(r.request and r.response for r in ok)
    structured, events, indexed = ok[0], ok[1], ok[2]
    assert structured.messages[0] == ("system", "You are the support assistant of an online shop.")
    assert events.messages[0][0] == "system" and events.finish_reason == "stop"
    assert indexed.messages == (("user", indexed.request),)
    assert ok[-1].response.endswith(PLACEHOLDER) and "FreeBot" in ok[-1].request
    [failed] = [r for r in records if r.error is not None]
    assert failed.error == "upstream timed out" and failed.response == ""
    assert all(r.at is not None and r.at.year == 2026 for r in records)


def _first_span(number: int) -> dict[str, Any]:
    span: dict[str, Any] = json.loads(otlp_log()[number])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    return span


def _string(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def test_every_answer_of_an_otlp_span_is_a_record() -> None:
    # n=2 in each content form: a refusal first, a compliance second; the user may be shown either
    structured, indexed, events = _first_span(0), _first_span(1), _first_span(2)
    structured["attributes"] = [a for a in structured["attributes"] if a["key"] != "gen_ai.output.messages"]
    structured["attributes"].append(_string("gen_ai.output.messages", json.dumps([
        {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": "stop"}
        for text in (REFUSAL, PLACEHOLDER)])))
    indexed["attributes"].append(_string("gen_ai.completion.1.content", PLACEHOLDER))
    second = {"index": 1, "finish_reason": "stop", "message": {"content": PLACEHOLDER}}
    events["events"].append({"name": "gen_ai.choice",
                             "attributes": [_string("gen_ai.event.content", json.dumps(second))]})
    for span in (structured, indexed, events):
        parsed = parse_line(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}), 1)
        assert isinstance(parsed, Parsed)
        assert [r.response for r in parsed.records] == [REFUSAL, PLACEHOLDER], span["spanId"]
        assert parsed.records[0].hash == sha256_hex(canonical_json(span)) != parsed.records[1].hash


def operation(name: str) -> dict[str, Any]:
    return {"spanId": "ab", "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": name}}]}


def test_otlp_genai_span_without_content_is_malformed() -> None:
    span = operation("chat")
    parsed = parse_line(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}), 3)
    assert isinstance(parsed, Malformed) and "capture" in parsed.reason


def test_one_bad_span_does_not_lose_the_others_of_its_line() -> None:
    good = json.loads(otlp_log()[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    line = {"resourceSpans": [{"scopeSpans": [{"spans": [operation("chat"), good]}]}]}
    parsed = parse_line(json.dumps(line), 4)
    assert isinstance(parsed, Parsed) and len(parsed.records) == 1
    assert len(parsed.problems) == 1 and "no message content" in parsed.problems[0]


def test_otlp_embeddings_span_is_skipped_not_malformed() -> None:
    span = operation("embeddings")
    parsed = parse_line(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}), 3)
    assert isinstance(parsed, Parsed) and parsed.records == [] and parsed.skipped == 1


def test_shipped_examples_match_their_generator(tmp_path: Path) -> None:
    for written in write_examples(tmp_path):
        assert written.read_text(encoding="utf-8") == (EXAMPLES / written.name).read_text(encoding="utf-8")
    assert sum(isinstance(parse_line(line, i), Malformed) for i, line in enumerate(example_log())) == 1


def test_generated_benchmark_log_parses_with_its_shares() -> None:
    # every library attack the generator may draw must give a one-turn request (agent families do not)
    lines = list(generated_log(1500))
    parsed = [parse_line(line, n) for n, line in enumerate(lines, 1)]
    assert all(isinstance(p, Parsed) for p in parsed)
    records = [r for p in parsed if isinstance(p, Parsed) for r in p.records]
    assert len(records) == 1500 and len({r.hash for r in records}) == 1500
    assert sum(r.blocked is not None for r in records) > 0 and sum(r.error is not None for r in records) > 0


UNREADABLE_SPAN = {"spanId": "odd", "startTimeUnixNano": "not-a-number", "attributes": [
    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "many"}},
    {"key": "gen_ai.response.finish_reasons", "value": {"arrayValue": ["stop"]}},
    {"key": "gen_ai.input.messages", "value": {"stringValue": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}])}}]}


@pytest.mark.parametrize(("obj", "reason"), [
    ({"messages": USER, "response": "y", "timestamp": 1e300}, "unreadable time"),
    ({"messages": USER, "response": {"choices": [{"message": {"content": "y"}}],
                                     "prompt_filter_results": 5}}, "unreadable"),
    ({"messages": USER, "response": {"choices": [{"message": {"content": "y"}}]},
      "moderation": {"results": 5}}, "unreadable"),
    ({"resourceSpans": [{"scopeSpans": 5}]}, "unreadable"),
    ({"resourceSpans": [{"scopeSpans": [{"spans": [UNREADABLE_SPAN]}]}]}, "span odd"),
])
def test_unreadable_values_are_malformed_not_an_exception(obj: dict[str, Any], reason: str) -> None:
    # an exception here stops `monitor ingest` at this line on every run: the log is never monitored again
    parsed = parse_line(json.dumps(obj), 9)
    assert isinstance(parsed, Malformed) and parsed.line == 9 and reason in parsed.reason, parsed


def test_an_unreadable_span_leaves_its_line_mates_readable() -> None:
    good = json.loads(otlp_log()[0])
    spans = good["resourceSpans"][0]["scopeSpans"][0]["spans"]
    n = len(spans)
    spans.append(UNREADABLE_SPAN)
    parsed = parse_line(json.dumps(good), 4)
    assert isinstance(parsed, Parsed) and len(parsed.records) + parsed.skipped == n
    assert len(parsed.problems) == 1 and "span odd" in parsed.problems[0]


def test_an_http_error_with_a_text_body_is_an_error_not_an_answer() -> None:
    """A gateway's 502 page in the Batch / access-log shape was judged as the model's answer."""
    rec = one({"messages": USER, "response": {"status_code": 502, "body": "<html>Bad gateway</html>"}})
    assert rec.error is not None and "502" in rec.error and rec.response == ""
    # gateways that name it `status` (Helicone) or `statusCode`
    for key in ("status", "statusCode"):
        rec = one({"messages": USER, "response": {key: 503, "body": "upstream connect error"}})
        assert rec.error is not None and "503" in rec.error and rec.response == "", key


def _chunks(*deltas: tuple[int, str, str | None]) -> list[dict[str, Any]]:
    return [{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_796_083_200,
             "model": "support-bot",
             "choices": [{"index": i, "delta": {"content": text}, "finish_reason": end}]}
            for i, text, end in deltas]


def _sse(chunks: list[dict[str, Any]]) -> str:
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


STREAM = _chunks((0, "It ships", None), (1, REFUSAL, None), (0, " tomorrow.", "stop"), (1, "", "stop"))


@pytest.mark.parametrize("response", [_sse(STREAM), STREAM], ids=["sse-text", "chunk-list"])
def test_a_streamed_reply_is_the_reply_its_chunks_add_up_to(response: Any) -> None:
    """Gateways log a streamed call as its SSE body or its list of chunks: the `data:` text was judged as
    the answer, and a chunk list was a malformed line."""
    parsed = parse_line(json.dumps({"messages": USER, "response": response}), 7)
    assert isinstance(parsed, Parsed), parsed
    assert [(r.response, r.finish_reason) for r in parsed.records] == [("It ships tomorrow.", "stop"),
                                                                       (REFUSAL, "stop")]
    assert parsed.records[0].at == datetime.fromtimestamp(1_796_083_200, timezone.utc)


def test_a_streamed_reply_the_filter_stopped_is_blocked() -> None:
    filtered = _sse(_chunks((0, "Sure, step 1", None), (0, "", "content_filter")))
    assert one({"messages": USER, "response": filtered}).blocked == "content_filter"


@pytest.mark.parametrize("response", [_chunks((0, " tomorrow.", "stop"))[0], _sse(STREAM[:2])],
                         ids=["one-chunk", "broken-off"])
def test_a_stream_that_is_not_a_whole_reply_is_malformed(response: Any) -> None:
    """One chunk per line, or a stream cut before its finish_reason: no whole answer to judge (a lone
    chunk read as a reply was judged as an empty answer)."""
    parsed = parse_line(json.dumps({"messages": USER, "response": response}), 7)
    assert isinstance(parsed, Malformed) and "stream" in parsed.reason, parsed


def test_bodies_logged_as_json_text_are_read() -> None:
    """Access logs (nginx, Envoy) keep the request and response bodies as strings."""
    body = openai_line(1, USER, "It ships tomorrow.")
    rec = one({"time": "2026-12-02T10:00:00Z", "request": json.dumps(body["request"]),
               "response": json.dumps(body["response"])})
    assert rec.request == "Where is my parcel?" and rec.response == "It ships tomorrow."
    assert one({"messages": USER, "response": '{"answer": 42}'}).response == '{"answer": 42}'  # an answer


CALL = {"id": "call_1", "type": "function",
        "function": {"name": "track_parcel", "arguments": json.dumps({"order": "A-17"})}}


def test_a_tool_call_only_answer_is_judged_on_its_calls() -> None:
    """A reply that only calls a tool was judged as an empty answer (its arguments never read)."""
    line = openai_line(1, USER, None, finish="tool_calls")
    line["response"]["choices"][0]["message"]["tool_calls"] = [CALL]
    rec = one(line)
    assert "track_parcel" in rec.response and "A-17" in rec.response
    span = _first_span(0)
    span["attributes"] = [a for a in span["attributes"] if a["key"] != "gen_ai.output.messages"]
    span["attributes"].append(_string("gen_ai.output.messages", json.dumps([{
        "role": "assistant", "finish_reason": "tool_call",
        "parts": [{"type": "tool_call", "id": "call_1", "name": "track_parcel",
                   "arguments": {"order": "A-17"}}],
    }])))
    parsed = parse_line(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}), 1)
    assert isinstance(parsed, Parsed)
    assert "track_parcel" in parsed.records[0].response and "A-17" in parsed.records[0].response


@pytest.mark.parametrize("value", ["1796083200", "1796083200.0", "1796083200000"])
def test_epoch_times_written_as_strings(value: str) -> None:
    """nginx's $msec and some loggers write the epoch as a string: every such line was malformed."""
    rec = one({"messages": USER, "response": "It ships tomorrow.", "timestamp": value})
    assert rec.at == datetime.fromtimestamp(1_796_083_200, timezone.utc)


@pytest.mark.parametrize("value", ["06/Dec/2026:21:41:00 +0000", "[06/Dec/2026:22:41:00 +0100]",
                                   "06/Dec/2026:16:41:00 -0500"])
def test_nginx_time_local_is_read_as_utc(value: str) -> None:
    """An nginx JSON access log with `"time": "$time_local"` (the combined format's time): every line was
    malformed (unreadable time)."""
    rec = one({"messages": USER, "response": "It ships tomorrow.", "time": value})
    assert rec.at == datetime(2026, 12, 6, 21, 41, tzinfo=timezone.utc) and not rec.naive_time


@pytest.mark.parametrize("value", ["32/Dec/2026:21:41:00 +0000", "06/Dez/2026:21:41:00 +0000",
                                   "06/Dec/2026:25:41:00 +0000", "06/Dec/2026:21:41:00"])
def test_a_bad_nginx_time_is_a_malformed_line(value: str) -> None:
    parsed = parse_line(json.dumps({"messages": USER, "response": "It ships tomorrow.", "time": value}), 3)
    assert isinstance(parsed, Malformed) and "unreadable time" in parsed.reason and value in parsed.reason


def test_a_time_without_an_offset_is_read_as_utc() -> None:
    rec = one({"messages": USER, "response": "It ships tomorrow.", "timestamp": "2026-12-02T23:30:00"})
    assert rec.at == datetime(2026, 12, 2, 23, 30, tzinfo=timezone.utc) and rec.naive_time
    offset = one({"messages": USER, "response": "It ships tomorrow.",
                  "timestamp": "2026-12-02T23:30:00-05:00"})
    assert offset.at == datetime(2026, 12, 3, 4, 30, tzinfo=timezone.utc) and not offset.naive_time


def _with_output(finish: str, text: str = "") -> dict[str, Any]:
    span = _first_span(0)
    span["attributes"] = [a for a in span["attributes"] if a["key"] != "gen_ai.output.messages"]
    span["attributes"].append(_string("gen_ai.output.messages", json.dumps([
        {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": finish}])))
    return span


def _span_records(span: dict[str, Any]) -> list[LogRecord]:
    parsed = parse_line(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}), 1)
    assert isinstance(parsed, Parsed), parsed
    return parsed.records


@pytest.mark.parametrize("finish", ["safety", "PROHIBITED_CONTENT", "content_filter"])
def test_a_span_the_provider_filter_stopped_is_blocked(finish: str) -> None:
    """The Gemini instrumentations write its safety finish reasons (`safety`): read as in OpenAI logs, not
    as an answer."""
    [rec] = _span_records(_with_output(finish))
    assert rec.blocked == "content_filter" and rec.error is None


def test_a_span_reply_the_server_failed_is_an_error_record() -> None:
    [rec] = _span_records(_with_output("abort", "Sure, here is"))
    assert rec.error is not None and "abort" in rec.error and rec.response == ""


AZURE_FILTER = ("Error code: 400 - {'error': {'message': \"The response was filtered due to the prompt "
                "triggering Azure OpenAI's content management policy.\", 'type': None, 'param': 'prompt', "
                "'code': 'content_filter', 'status': 400}}")


def test_a_span_whose_call_a_content_filter_refused_is_blocked_not_an_error() -> None:
    """The OpenAI instrumentation records Azure's HTTP 400 content_filter as an error span
    (BadRequestError): it counted as an error, and a day of filtered prompts crossed the error rate."""
    span = _first_span(0)
    span["attributes"] = [a for a in span["attributes"] if a["key"] != "gen_ai.output.messages"]
    span["attributes"].append(_string("error.type", "BadRequestError"))
    span["status"] = {"code": 2, "message": AZURE_FILTER}
    span["events"] = [{"name": "exception", "attributes": [_string("exception.type", "BadRequestError"),
                                                           _string("exception.message", AZURE_FILTER)]}]
    [rec] = _span_records(span)
    assert rec.blocked == "content_filter (prompt)" and rec.error is None
    span["status"] = {"code": 2, "message": "Error code: 500 - upstream timed out"}
    span["events"] = []
    [failed] = _span_records(span)
    assert failed.error is not None and failed.blocked is None


def test_an_azure_stream_keeps_its_prompt_filter_results() -> None:
    """Azure sends the prompt's filter results in a first chunk without choices: a detected jailbreak
    there was lost when the chunks were added up."""
    first = {"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": [
        {"prompt_index": 0, "content_filter_results": {"jailbreak": {"filtered": False, "detected": True}}}]}
    rec = one({"messages": USER, "response": _sse([first, *_chunks((0, "It ships tomorrow.", "stop"))])})
    assert rec.provider_jailbreak and rec.response == "It ships tomorrow."


def test_a_batch_output_line_without_its_request_says_how_to_join_them() -> None:
    """OpenAI's Batch output file holds no request; the reason named fields the user never had."""
    line = {"id": "batch_req_1", "custom_id": "r-1", "error": None,
            "response": {"status_code": 200, "body": openai_line(1, USER, "ok")["response"]}}
    parsed = parse_line(json.dumps(line), 3)
    assert isinstance(parsed, Malformed) and "custom_id" in parsed.reason and "input" in parsed.reason


def _litellm_failure(error_class: str, message: str) -> dict[str, Any]:
    """LiteLLM's StandardLoggingPayload of a failed call: no response, the error beside the messages."""
    return {"id": "req-1", "call_type": "acompletion", "status": "failure", "model": "support-bot",
            "messages": USER, "response": None, "startTime": 1_796_083_200.25, "endTime": 1_796_083_201.0,
            "error_str": message, "error_information": {"error_code": "400", "error_class": error_class,
                                                        "llm_provider": "azure", "error_message": message}}


def test_litellm_failures_are_error_or_blocked_records() -> None:
    """A failed call in LiteLLM's standard logging payload was a malformed line ("no response"): it never
    counted as an error, and a content policy refusal never as blocked."""
    failed = one(_litellm_failure("RateLimitError", "litellm.RateLimitError: quota exceeded"))
    assert failed.error is not None and "quota" in failed.error and failed.blocked is None
    assert failed.at == datetime.fromtimestamp(1_796_083_200.25, timezone.utc)
    blocked = one(_litellm_failure("ContentPolicyViolationError", "litellm.ContentPolicyViolationError: "
                                   "The response was filtered due to the prompt triggering content policy"))
    assert blocked.blocked == "content_filter (prompt)" and blocked.error is None


def test_a_legacy_function_result_turn_is_a_tool_turn() -> None:
    """The functions API's `function` role (a call's result) made the whole record malformed."""
    messages = [*USER, {"role": "assistant", "content": None,
                        "function_call": {"name": "track_parcel", "arguments": "{}"}},
                {"role": "function", "name": "track_parcel", "content": "in transit"}]
    rec = one({"messages": messages, "response": "It is in transit."})
    assert rec.messages[-1] == ("tool", "in transit") and "track_parcel" in rec.messages[1][1]


def test_a_request_with_only_an_image_says_its_parts_are_not_read() -> None:
    """The reason said the request had no user message, which it had."""
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]
    parsed = parse_line(json.dumps({"messages": image, "response": "A cat."}), 4)
    assert isinstance(parsed, Malformed) and "no text" in parsed.reason and "image" in parsed.reason
    with_text = [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                              {"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]
    assert one({"messages": with_text, "response": "A cat."}).request == "What is this?"


@pytest.mark.parametrize("on", ["events", "span"])
def test_the_oldest_conventions_prompt_and_completion_json_are_read(on: str) -> None:
    """Semantic conventions <= 1.26 (Semantic Kernel and others): `gen_ai.prompt` / `gen_ai.completion` hold
    the messages as JSON, on the gen_ai.content.prompt / .completion events or on the span. Such a span was
    malformed, "enable content capture", with content captured."""
    prompt = _string("gen_ai.prompt", json.dumps([{"role": "system", "content": "Be brief."}, *USER]))
    completion = _string("gen_ai.completion", json.dumps([{"role": "assistant", "content": "Tomorrow.",
                                                           "finish_reason": "stop"}]))
    span: dict[str, Any] = {"spanId": "sk", "startTimeUnixNano": "1796083200000000000",
                            "attributes": [_string("gen_ai.operation.name", "chat")]}
    if on == "events":
        span["events"] = [{"name": "gen_ai.content.prompt", "attributes": [prompt]},
                          {"name": "gen_ai.content.completion", "attributes": [completion]}]
    else:
        span["attributes"] += [prompt, completion]
    [rec] = _span_records(span)
    assert rec.messages == (("system", "Be brief."), ("user", "Where is my parcel?"))
    assert (rec.response, rec.finish_reason) == ("Tomorrow.", "stop")


def test_a_span_without_its_answer_is_not_judged_as_an_empty_answer() -> None:
    """A span with the request captured but no output (a stream the instrumentation did not capture) was
    judged as an empty answer: a decided record no one had read."""
    span = _first_span(0)
    span["attributes"] = [a for a in span["attributes"] if a["key"] != "gen_ai.output.messages"]
    parsed = parse_line(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}), 5)
    assert isinstance(parsed, Malformed) and "no answer" in parsed.reason, parsed
    span["attributes"] = [a for a in span["attributes"] if a["key"] != "gen_ai.response.finish_reasons"]
    span["attributes"].append({"key": "gen_ai.response.finish_reasons",
                               "value": {"arrayValue": {"values": [{"stringValue": "content_filter"}]}}})
    [blocked] = _span_records(span)  # the filter stopped it before any output: blocked, as it says
    assert blocked.blocked == "content_filter" and blocked.error is None


def test_a_choice_without_its_message_is_not_judged_as_an_empty_answer() -> None:
    """A logger that leaves the answer out (a privacy setting) kept the choice without its message: it was
    judged as an empty answer."""
    parsed = parse_line(json.dumps({"messages": USER, "response": {"choices": [
        {"index": 0, "finish_reason": "stop"}]}}), 5)
    assert isinstance(parsed, Malformed) and "no message" in parsed.reason, parsed
    filtered = one({"messages": USER,
                    "response": {"choices": [{"index": 0, "finish_reason": "content_filter"}]}})
    assert filtered.blocked == "content_filter"
