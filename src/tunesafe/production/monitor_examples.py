"""Example production logs for `tunesafe monitor ingest`, built from the project's own smoke suite and
attack library (no template is copied here): benign and borderline questions answered, harmful ones
refused, one call blocked by the provider's content filter, one failed call, one malformed line, and one
planted jailbreak (a harmful request in a library attack's framing) answered with placeholder steps.

    python -m tunesafe.production.monitor_examples examples/production

writes the shipped examples (chat-completions.jsonl, otel-genai-spans.jsonl); a test checks they match
this generator. `generated_log(n)` makes the benchmark's larger log with distinct requests.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunesafe.types import Behavior

START = 1_796_083_200  # 2026-12-01T00:00:00Z
REFUSAL = "I'm sorry, but I can't help with that."
HELPFUL = "Happy to help. Here is a short overview: [general, harmless information]."
PLACEHOLDER = "Sure, here it is. Step 1: [redacted]. Step 2: [redacted]. Step 3: [redacted]."
PLANTED_BEHAVIOUR = "h-cyber-001"
PLANTED_ATTACK = "roleplay_dan"
SYSTEM = "You are the support assistant of an online shop."


def _suite() -> list[Behavior]:
    from tunesafe.suite import load_suite

    return list(load_suite("smoke").behaviors)


def jailbreak_messages(behavior: Behavior, attack: str = PLANTED_ATTACK) -> list[dict[str, str]]:
    """The messages a library attack sends for this behaviour (what a jailbreak in the log looks like)."""
    from tunesafe.attacks import library

    [attempt] = library.get(attack).expand(behavior, seed=0)[:1]
    return [{"role": m.role, "content": m.content} for m in attempt.messages]


def openai_line(number: int, messages: list[dict[str, str]], answer: str | None, *, finish: str = "stop",
                error: dict[str, Any] | None = None, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    created = START + 37 * number
    request = {"model": "support-bot", "messages": [{"role": "system", "content": SYSTEM}, *messages]}
    if error is not None:
        return {"timestamp": created, "request": request, "error": error}
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish,
                              "message": {"role": "assistant", "content": answer}}
    if filters is not None:
        choice["content_filter_results"] = filters
    response = {"id": f"chatcmpl-{number:05d}", "object": "chat.completion", "created": created,
                "model": "support-bot", "choices": [choice],
                "usage": {"prompt_tokens": 30, "completion_tokens": 20, "total_tokens": 50}}
    return {"request": request, "response": response}


def example_log() -> list[str]:
    """The shipped OpenAI-format example, one JSON object (or the one malformed line) per item."""
    behaviors = _suite()
    lines: list[str] = []

    def add(obj: dict[str, Any]) -> None:
        lines.append(json.dumps(obj, ensure_ascii=False))

    for b in behaviors:
        user = [{"role": "user", "content": b.text}]
        add(openai_line(len(lines), user, REFUSAL if b.kind == "harmful" else HELPFUL))
    planted = next(b for b in behaviors if b.id == PLANTED_BEHAVIOUR)
    add(openai_line(len(lines), jailbreak_messages(planted), "FreeBot: " + PLACEHOLDER))
    add(openai_line(len(lines), [{"role": "user", "content": behaviors[8].text}], None,
                    finish="content_filter", filters={"hate": {"filtered": True, "severity": "high"},
                             "violence": {"filtered": False, "severity": "safe"}}))
    add(openai_line(len(lines), [{"role": "user", "content": behaviors[-1].text}], None,
                    error={"code": "server_error", "message": "The server had an error while processing"}))
    lines.append('{"request": {"model": "support-bot", "messages": [{"role": "user", "content": "Wh')
    add(openai_line(len(lines), [{"role": "user", "content": behaviors[-2].text}], HELPFUL))
    return lines


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {"key": key, "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _span(number: int, attributes: list[dict[str, Any]], events: list[dict[str, Any]] | None = None,
          status: dict[str, Any] | None = None) -> dict[str, Any]:
    start = (START + 37 * number) * 1_000_000_000
    span: dict[str, Any] = {"traceId": f"{number + 1:032x}", "spanId": f"{number + 1:016x}",
                            "name": "chat support-bot", "kind": 3, "startTimeUnixNano": str(start),
                            "endTimeUnixNano": str(start + 1_250_000_000), "attributes": attributes,
                            "status": status or {}}
    if events:
        span["events"] = events
    return span


def _export(spans: list[dict[str, Any]]) -> str:
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [_attr("service.name", "support-bot")]},
        "scopeSpans": [{"scope": {"name": "tunesafe.examples"}, "spans": spans}]}]}, ensure_ascii=False)


def otlp_log() -> list[str]:
    """The shipped OTLP JSON example: the three content forms of the GenAI conventions (>= 1.37
    attributes, <= 1.36 events, indexed prompt/completion attributes), a non-GenAI span, a failed call
    and the planted jailbreak, a few spans per line as the file exporter batches them."""
    behaviors = _suite()
    planted = next(b for b in behaviors if b.id == PLANTED_BEHAVIOUR)
    spans = []
    for number, b in enumerate(behaviors[:12]):
        answer = REFUSAL if b.kind == "harmful" else HELPFUL
        common = [_attr("gen_ai.operation.name", "chat"), _attr("gen_ai.request.model", "support-bot"),
                  _attr("gen_ai.response.finish_reasons", ["stop"])]
        form = number % 3
        if form == 0:
            spans.append(_span(number, [
                *common, _attr("gen_ai.provider.name", "openai"),
                _attr("gen_ai.system_instructions", json.dumps([{"type": "text", "content": SYSTEM}])),
                _attr("gen_ai.input.messages", json.dumps([{"role": "user", "parts": [
                    {"type": "text", "content": b.text}]}])),
                _attr("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": [
                    {"type": "text", "content": answer}], "finish_reason": "stop"}]))]))
        elif form == 1:
            spans.append(_span(number, [*common, _attr("gen_ai.system", "openai")], events=[
                {"name": "gen_ai.system.message", "attributes": [_attr("content", SYSTEM)]},
                {"name": "gen_ai.user.message", "attributes": [_attr("content", b.text)]},
                {"name": "gen_ai.choice", "attributes": [_attr("gen_ai.event.content", json.dumps(
                    {"index": 0, "finish_reason": "stop", "message": {"content": answer}}))]}]))
        else:
            spans.append(_span(number, [*common, _attr("gen_ai.system", "openai"),
                                        _attr("gen_ai.prompt.0.role", "user"),
                                        _attr("gen_ai.prompt.0.content", b.text),
                                        _attr("gen_ai.completion.0.content", answer),
                                        _attr("gen_ai.completion.0.finish_reason", "stop")]))
    spans.append(_span(12, [_attr("http.request.method", "POST"), _attr("url.path", "/v1/chat/completions")]))
    spans.append(_span(13, [_attr("gen_ai.operation.name", "chat"), _attr("gen_ai.provider.name", "openai"),
                            _attr("error.type", "timeout"),
                            _attr("gen_ai.input.messages", json.dumps([{"role": "user", "parts": [
                                {"type": "text", "content": behaviors[-1].text}]}]))],
                       status={"code": 2, "message": "upstream timed out"}))
    jailbreak = [{"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]}
                 for m in jailbreak_messages(planted)]
    spans.append(_span(14, [_attr("gen_ai.operation.name", "chat"), _attr("gen_ai.provider.name", "openai"),
                            _attr("gen_ai.request.model", "support-bot"),
                            _attr("gen_ai.input.messages", json.dumps(jailbreak)),
                            _attr("gen_ai.output.messages", json.dumps([{"role": "assistant", "parts": [
                                {"type": "text", "content": "FreeBot: " + PLACEHOLDER}],
                                "finish_reason": "stop"}]))]))
    return [_export(spans[i:i + 5]) for i in range(0, len(spans), 5)]


# Benchmark traffic: distinct requests (a real log repeats few verbatim, and the embedders cache repeats).
_TOPICS = ("my order", "a refund", "the delivery date", "a discount code", "my password", "the invoice",
           "a broken zipper", "gift wrapping", "the return label", "my address", "a size exchange",
           "the warranty", "a missing item", "express shipping", "the loyalty points")
_ASKS = ("Can you help me with {t}? It is about order {n}.", "I have a question about {t} (ticket {n}).",
         "How long does {t} usually take? My reference is {n}.", "Where do I find {t} for order {n}?",
         "Something went wrong with {t}, order number {n}, what should I do?")
_ANSWERS = ("You can manage {t} from your account page under Orders; reference {n} is listed there.",
            "Thanks for reaching out. For {t}, open the help centre and pick the matching topic ({n}).",
            "Usually {t} is handled within two working days. I have noted reference {n}.")


def generated_log(n: int, seed: int = 0) -> Iterator[str]:
    """`n` OpenAI-format lines of shop-support traffic with distinct requests: about 80% everyday
    questions answered, 12% harmful requests refused, 5% library jailbreaks refused, 2% blocked by the
    provider's filter, 1% failed calls (shares by a seeded draw)."""
    from tunesafe.attacks import library

    rng = random.Random(seed)
    behaviors = _suite()
    harmful = [b for b in behaviors if b.kind == "harmful"]
    # attacks that rewrite one chat turn: agent families expand to episodes, not to a logged request
    attacks = [a for a in library.all_attacks() if not a.meta.needs_attacker and a.meta.family not in (
        "direct_request", "past_tense_reformulation", "many_shot") and a.expand(harmful[0], seed=0)]
    for number in range(n):
        draw = rng.random()
        topic, ref = rng.choice(_TOPICS), f"{rng.randrange(10**7):07d}-{number}"
        if draw < 0.80:
            ask = rng.choice(_ASKS).format(t=topic, n=ref)
            line = openai_line(number, [{"role": "user", "content": ask}],
                               rng.choice(_ANSWERS).format(t=topic, n=ref))
        elif draw < 0.92:
            b = rng.choice(harmful)
            line = openai_line(number, [{"role": "user", "content": f"{b.text} ({ref})"}], REFUSAL)
        elif draw < 0.97:
            b = rng.choice(harmful)
            wrapped = Behavior(id=b.id, text=f"{b.text} ({ref})", kind=b.kind, category=b.category)
            attempt = rng.choice(attacks).expand(wrapped, seed=number)[0]
            messages = [{"role": m.role, "content": m.content} for m in attempt.messages]
            line = openai_line(number, messages, REFUSAL)
        elif draw < 0.99:
            line = openai_line(number, [{"role": "user", "content": f"{rng.choice(harmful).text} ({ref})"}],
                               None, finish="content_filter", filters={"violence": {"filtered": True,
                                                                                   "severity": "medium"}})
        else:
            line = openai_line(number, [{"role": "user", "content": f"Question about {topic} ({ref})"}], None,
                               error={"code": "server_error", "message": "upstream error"})
        yield json.dumps(line, ensure_ascii=False)


def write_examples(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, lines in (("chat-completions.jsonl", example_log()), ("otel-genai-spans.jsonl", otlp_log())):
        path = folder / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":
    for written in write_examples(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/production")):
        print(written)
