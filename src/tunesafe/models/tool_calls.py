"""Tool calls as text: the one form every backend hands back and the agent harness reads.

A tool-calling turn travels through `ChatRequest.tools` (OpenAI schemas) and `Generation.text`, which
holds the assistant's text with each call as a Hermes-style block (Qwen2.5's chat-template format):

    <tool_call>
    {"name": "read_file", "arguments": {"path": "bill.txt"}}
    </tool_call>

so conversations, caching and storage keep their plain `Message(role, content)` shape. The OpenAI backend
converts to and from `tool_calls` / `tool` messages (`to_openai_messages`, `from_openai_message`); local
backends render the history with the chat template's own tool format (`to_template_messages`).

Parsing is strict about content and lenient only about packaging: a call needs a JSON object with a
string `name` and an object `arguments` (a JSON string holding an object is accepted, as OpenAI sends
it); a missing closing tag or a Markdown fence inside the tags is tolerated (vLLM's hermes parser does
the same). Single quotes, Python literals or truncated JSON are never repaired: such a block is
`malformed`, an outcome the harness counts (InjecAgent's invalid rate), never a call. A reply made
only of bare JSON objects (small models often drop the tags) is read the same way: calls when every
object is one, malformed otherwise. A call object inside prose (Llama 3's JSON format with "parameters"
too) is malformed, never part of an answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesafe.types import Message

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)\Z", re.DOTALL)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


# Strict JSON: Python's decoder reads NaN and Infinity, which no JSON call can hold; read as numbers they
# slip past a tool's own checks (a NaN amount passes both `<= 0` and `> balance`), so the call is malformed.
_JSON = json.JSONDecoder(parse_constant=_not_json)

_END, _END_ESCAPED = "</", "<\\/"
_FENCE = re.compile(r"\A```(?:json)?\s*(.*?)\s*```\Z", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedReply:
    """An assistant turn read back: its text outside the calls, the well-formed calls in order, and the
    raw bodies of blocks that are not a call (and of call objects in the text around the blocks).
    `untagged`: the reply was bare JSON objects, no tags."""

    text: str
    calls: tuple[ToolCall, ...] = ()
    malformed: tuple[str, ...] = ()
    untagged: bool = False


def render_call(call: ToolCall) -> str:
    body = json.dumps({"name": call.name, "arguments": dict(call.arguments)}, ensure_ascii=False)
    # "</" occurs only inside strings here; JSON's "\/" keeps a closing tag an argument holds (a file the
    # call forwards) from ending the block early, which read a well-formed call back as malformed
    return f"{OPEN}\n{body.replace(_END, _END_ESCAPED)}\n{CLOSE}"


def render_reply(text: str, calls: Sequence[ToolCall]) -> str:
    return "\n".join(part for part in (text.strip(), *(render_call(c) for c in calls)) if part)


def parse_reply(text: str) -> ParsedReply:
    calls: list[ToolCall] = []
    malformed: list[str] = []
    for match in _BLOCK.finditer(text):
        body = (match.group(1) if match.group(1) is not None else match.group(2)).strip()
        call = _call(body)
        if call is None:
            malformed.append(body)
        else:
            calls.append(call)
    outside = _BLOCK.sub("", text).strip()
    if not calls and not malformed:
        bare = _bare_calls(outside)  # small models often drop the tags around otherwise valid calls
        if bare is not None:
            return bare
    malformed += _calls_in_text(outside)
    return ParsedReply(text=outside, calls=tuple(calls), malformed=tuple(malformed))


# how call objects name their arguments: "arguments" (OpenAI, Hermes), "parameters" (Llama 3's JSON format)
_ARGUMENT_KEYS = {"arguments", "parameters"}


def _calls_in_text(text: str) -> list[str]:
    """Call objects written into prose ("Paying now: {"name": ...}"): no call, as no runtime reads one
    there, but no answer either; read as text, the episode ended "answered", the attempt uncounted."""
    found: list[str] = []
    at = text.find("{")
    while at != -1:
        try:
            value, end = _JSON.raw_decode(text, at)
        except ValueError:
            at = text.find("{", at + 1)
            continue
        if isinstance(value, dict) and isinstance(value.get("name"), str) and set(value) & _ARGUMENT_KEYS:
            found.append(text[at:end])
            at = text.find("{", end)
        else:
            at = text.find("{", at + 1)
    return found


def _bare_calls(text: str) -> ParsedReply | None:
    """A reply made only of JSON objects (optionally in one fence): calls when every object is one,
    else malformed; None for a reply that is text."""
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    if not body.startswith("{"):
        return None
    decoder, values, at = _JSON, [], 0
    while at < len(body):
        try:
            value, end = decoder.raw_decode(body, at)
        except ValueError:
            return ParsedReply(text="", malformed=(body,), untagged=True)
        values.append(value)
        at = end
        while at < len(body) and body[at].isspace():
            at += 1
    calls = [_call(json.dumps(v)) for v in values]
    if any(c is None for c in calls):
        return ParsedReply(text="", malformed=(body,), untagged=True)
    return ParsedReply(text="", calls=tuple(c for c in calls if c is not None), untagged=True)


def _call(body: str) -> ToolCall | None:
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        value = _JSON.decode(body)
    except ValueError:
        return None
    if not isinstance(value, dict) or set(value) != {"name", "arguments"}:
        return None
    if not isinstance(value["name"], str):
        return None
    arguments = _arguments(value["arguments"])
    return None if arguments is None else ToolCall(value["name"], arguments)


def _arguments(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):  # OpenAI's arguments are a JSON string holding the object
        try:
            value = _JSON.decode(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None



def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Chat messages in OpenAI's tool-calling shape: an assistant turn's calls become `tool_calls` with
    ids, and each following `tool` message answers the next call of that turn, in order."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []
    for turn, message in enumerate(messages):
        if message.role == "assistant":
            reply = parse_reply(message.content)
            ids = [f"call_{turn}_{i}" for i in range(len(reply.calls))]
            entry: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
            if reply.calls:
                entry["tool_calls"] = [
                    {"id": i, "type": "function", "function": {
                        "name": c.name, "arguments": json.dumps(dict(c.arguments), ensure_ascii=False)}}
                    for i, c in zip(ids, reply.calls, strict=True)]
            else:
                entry["content"] = message.content
            out.append(entry)
            pending = ids
        elif message.role == "tool":
            call_id = pending.pop(0) if pending else f"call_{turn}_orphan"
            out.append({"role": "tool", "tool_call_id": call_id, "content": message.content})
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def from_openai_message(message: Mapping[str, Any]) -> str:
    """An OpenAI assistant message as text with call blocks. Arguments that are not a JSON object stay
    as sent, so the block reads back as malformed rather than as a repaired call. A legacy
    `function_call` (the functions API's one call) is a call too: dropped, the turn read as an answer."""
    parts = [str(message.get("content") or "").strip()]
    items = list(message.get("tool_calls") or ())
    if message.get("function_call") is not None:
        items.append({"type": "function", "function": message["function_call"]})
    for item in items:
        function = item.get("function") if isinstance(item, Mapping) else None
        if not isinstance(function, Mapping):
            parts.append(f"{OPEN}\n{json.dumps(item)}\n{CLOSE}")
            continue
        name, raw = function.get("name"), function.get("arguments")
        # "" is what some models and providers send for a tool without parameters, and agent runtimes
        # call the tool with none; read as malformed, the episode ended before the agent read its data
        arguments = {} if isinstance(raw, str) and not raw.strip() else _arguments(raw)
        if isinstance(name, str) and arguments is not None:
            parts.append(render_call(ToolCall(name, arguments)))
        else:
            parts.append(f'{OPEN}\n{{"name": {json.dumps(name)}, "arguments": {raw}}}\n{CLOSE}')
    return "\n".join(p for p in parts if p)


def to_template_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Chat messages for a Hugging Face chat template with tool support (Qwen2.5: `tool_calls` with
    arguments as an object, since its template applies tojson to them; `tool` turns in call order)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        reply = parse_reply(message.content) if message.role == "assistant" else None
        if reply is not None and reply.calls:
            out.append({"role": "assistant", "content": reply.text, "tool_calls": [
                {"type": "function", "function": {"name": c.name, "arguments": dict(c.arguments)}}
                for c in reply.calls]})
        else:
            out.append({"role": message.role, "content": message.content})
    return out
