"""A chat completion streamed as server-sent events although no stream was asked for (some gateways stream
every reply), read back into the one completion object the chunks add up to (tool calls and a legacy
`function_call` put back together from their pieces, as a non-streamed reply holds them). The raw
`data:` lines are never an answer: a stream that breaks off before its finish_reason, or that is no
stream of chunks, is a ValueError (BrokenStream, or the JSON error of an event that is no JSON); one that
carries an error comes back with it as the completion's `error`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")


class BrokenStream(ValueError):
    """A stream that is not one whole reply: it says what is wrong."""


def is_event_stream(content_type: str, body: bytes) -> bool:
    """Whether a reply is a stream: by its type, or by its first line where a server did not say."""
    declared = content_type.split(";")[0].strip().lower() == "text/event-stream"
    return declared or body.lstrip().startswith(b"data:")


def stream_completion(text: str) -> dict[str, Any]:
    """The chat completion the chunks of an SSE body add up to (the first choice's)."""
    return chunks_completion(stream_chunks(text))


def stream_chunks(text: str) -> list[dict[str, Any]]:
    """The chunks of an SSE body, up to its `[DONE]`."""
    chunks = []
    for data in _events(text):
        if data.strip() == "[DONE]":
            break
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            raise BrokenStream(f"a stream event that is no chunk: {data[:80]!r}")
        chunks.append(chunk)
    return chunks


def chunks_completion(chunks: Iterable[Mapping[str, Any]], index: int = 0) -> dict[str, Any]:
    """The chat completion a stream's chunks add up to, for the choice `index`."""
    texts: dict[str, list[str]] = {}
    calls: list[dict[str, Any]] = []
    slots: dict[int, dict[str, Any]] = {}  # a call's index in the stream -> that call
    legacy: dict[str, Any] = {}  # the functions API's one `function_call`
    completion: dict[str, Any] = {}
    finish = None
    for chunk in chunks:
        if chunk.get("error"):  # a failure mid-stream: what came before it is no answer
            return {"error": chunk["error"], "choices": [{"message": {"content": ""}}]}
        completion.update({k: chunk[k] for k in ("id", "model", "created", "usage") if chunk.get(k)})
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != index:
                continue
            if choice.get("error"):
                return {"error": choice["error"], "choices": [{"message": {"content": ""}}]}
            delta = choice.get("delta") or {}
            for name in _TEXT_FIELDS:
                if isinstance(delta.get(name), str):
                    texts.setdefault(name, []).append(delta[name])
            for call in delta.get("tool_calls") or ():
                _add_call(_slot(calls, slots, call), call)
            if isinstance(delta.get("function_call"), dict):
                _add_call(legacy, {"function": delta["function_call"]})
            finish = choice.get("finish_reason") or finish
            if choice.get("content_filter_results"):
                completion["content_filter_results"] = choice["content_filter_results"]
    if finish is None:
        raise BrokenStream("the streamed reply broke off before its finish_reason")
    message: dict[str, Any] = {"role": "assistant", "content": None,
                               **{name: "".join(parts) for name, parts in texts.items()}}
    if calls:
        message["tool_calls"] = calls
    if legacy:
        message["function_call"] = legacy["function"]
    choice = {"index": index, "message": message, "finish_reason": finish}
    if "content_filter_results" in completion:
        choice["content_filter_results"] = completion.pop("content_filter_results")
    return {**completion, "object": "chat.completion", "choices": [choice]}


def _slot(calls: list[dict[str, Any]], slots: dict[int, dict[str, Any]],
          delta: dict[str, Any]) -> dict[str, Any]:
    """The call a tool-call delta adds to: the one of its index, or the last one where it has none. A
    delta with an id other than that call's starts a new call (Ollama numbers every call 0), and so does
    one without an index or id that names a function after a named call (Gemini sends whole calls
    without an index): joined, two calls ran together into one malformed block."""
    index = delta.get("index")
    current = slots.get(index) if isinstance(index, int) else calls[-1] if calls else None
    named = bool((delta.get("function") or {}).get("name"))
    if current is None or (delta.get("id") and current.get("id") not in (None, delta["id"])) or (
            index is None and not delta.get("id") and named and current["function"]["name"]):
        current = {}
        calls.append(current)
    if isinstance(index, int):
        slots[index] = current
    return current


def _add_call(call: dict[str, Any], delta: dict[str, Any]) -> None:
    """A tool call's pieces: its id and name once, its arguments in fragments."""
    for key in ("id", "type"):
        if delta.get(key):
            call[key] = delta[key]
    function = call.setdefault("function", {"name": "", "arguments": ""})
    for key in ("name", "arguments"):
        piece = (delta.get("function") or {}).get(key)
        if isinstance(piece, str):
            function[key] += piece


def _events(text: str) -> Iterator[str]:
    """The data of each event: its `data:` lines joined; comments (keep-alives) and other fields skipped."""
    lines: list[str] = []
    for line in text.splitlines():
        if not line:
            if lines:
                yield "\n".join(lines)
            lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)
