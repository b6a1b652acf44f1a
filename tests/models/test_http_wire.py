"""The openai: backend against what real servers, gateways and proxies send on the wire: raw loopback
servers (tunesafe.testing.raw_http) answering byte for byte, over both transports (client=auto is
tunesafe.models.http1 for plain http, client=httpx what https and proxies use)."""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import socket
import struct
import zlib

import pytest

from tunesafe.errors import EndpointUnavailable, UserError
from tunesafe.models import load_model, openai_http
from tunesafe.models.openai_http import OpenAIChatModel
from tunesafe.models.sse import stream_completion
from tunesafe.models.tool_calls import ToolCall, parse_reply
from tunesafe.testing.openai_server import serve
from tunesafe.testing.raw_http import Handler, answer_with, completion, raw_server, read_request, response
from tunesafe.types import ChatRequest, Generation, Message

CLIENTS = ["auto", "httpx"]
JSON = "content-type: application/json"


def ask(handler: Handler, n: int = 1, host: str = "127.0.0.1", url_host: str | None = None,
        path: str = "/v1", **options: object) -> tuple[list[Generation], int]:
    """Send n requests one after another to a raw server (over one connection slot, so a connection is
    reused); the generations and the connections made."""
    options.setdefault("concurrency", 1)

    async def main() -> tuple[list[Generation], int]:
        async with raw_server(handler, host) as (port, connections):
            name = url_host or host
            shown = f"[{name}]" if ":" in name and "@" not in name else name
            model = OpenAIChatModel("m", f"http://{shown}:{port}{path}", **options)  # type: ignore[arg-type]
            try:
                gens = [(await model.generate([ChatRequest(messages=(Message("user", f"q{i}"),))]))[0]
                        for i in range(n)]
            finally:
                await model.aclose()
            return gens, len(connections)

    return asyncio.run(main())


def one(reply: bytes, client: str, **options: object) -> Generation:
    options.setdefault("max_retries", 0)
    (gen,), _ = ask(answer_with(reply), client=client, **options)
    return gen


@pytest.mark.parametrize("client", CLIENTS)
def test_a_body_a_gateway_compressed_is_read(client: str) -> None:
    # no Accept-Encoding (or identity) leaves a server free to pick; gateways do gzip JSON unasked
    for encoded, name in ((gzip.compress(completion()), "gzip"), (zlib.compress(completion()), "deflate")):
        gen = one(response(encoded, headers=(JSON, f"content-encoding: {name}")), client)
        assert gen.ok and gen.text == "a real answer", (name, gen.error)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_body_in_an_encoding_the_client_cannot_read_is_one_clear_error(client: str) -> None:
    gen = one(response(b"\x1b\x00\x00garbled", headers=(JSON, "content-encoding: br")), client)
    assert not gen.ok and gen.text == ""
    assert "content-encoding br" in (gen.error or "")


def test_the_lean_client_asks_for_an_uncompressed_body() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(response(completion(), headers=(JSON,)))

    ask(record, client="auto")
    assert b"accept-encoding: identity" in seen[0].lower()


def sse(*events: dict[str, object]) -> bytes:
    """A streamed completion's body: one `data:` event per chunk, then [DONE]."""
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def delta(finish: str | None = None, **fields: object) -> dict[str, object]:
    return {"id": "c1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": fields, "finish_reason": finish}]}


@pytest.mark.parametrize("client", CLIENTS)
def test_a_stream_sent_unasked_is_read_as_the_answer_it_carries(client: str) -> None:
    # some gateways stream whatever was asked: the answer is the deltas joined, never the "data:" lines
    usage = {"id": "c1", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}
    body = sse(delta(role="assistant", content=""), delta(content="a real"), delta(content=" answer"),
               delta("stop"), usage)
    gen = one(response(body, headers=("content-type: text/event-stream; charset=utf-8",), length=False),
              client)
    assert gen.ok and gen.text == "a real answer" and gen.finish_reason == "stop", gen.error
    assert gen.completion_tokens == 3


@pytest.mark.parametrize("client", CLIENTS)
def test_a_stream_that_carries_an_error_or_breaks_off_is_an_error(client: str) -> None:
    failed = sse(delta(content="Sure, here"), {"error": {"message": "upstream died"}})
    # no finish_reason, no [DONE]: the stream broke off
    unfinished = b"data: " + json.dumps(delta(content="Sure, here")).encode() + b"\n\n"
    for body, says in ((failed, "upstream died"), (unfinished, "stream")):
        gen = one(response(body, headers=("content-type: text/event-stream",)), client)
        assert not gen.ok and gen.text == "" and says in (gen.error or ""), gen


@pytest.mark.parametrize("client", CLIENTS)
def test_a_json_body_with_a_byte_order_mark_is_read(client: str) -> None:
    gen = one(response(b"\xef\xbb\xbf" + completion(), headers=(JSON,)), client)
    assert gen.ok and gen.text == "a real answer", gen.error


@pytest.mark.parametrize("client", CLIENTS)
def test_what_a_proxy_or_gateway_answers_in_place_of_the_model_is_an_error(client: str) -> None:
    html = b"<html><body><h1>Welcome</h1>Please sign in to continue</body></html>"
    gateway_error = json.dumps({"error": {"message": "upstream timed out", "type": "gateway"}}).encode()
    for reply, says in ((response(html, headers=("content-type: text/html",)), "malformed"),
                        (response(gateway_error, headers=(JSON,)), "upstream timed out"),
                        (response(html, "502 Bad Gateway", ("content-type: text/html",)), "HTTP 502"),
                        (response(b"", "200 OK"), "malformed"),
                        (response(b"", "204 No Content", length=False), "HTTP 204")):
        gen = one(reply, client)
        assert not gen.ok and gen.text == "" and gen.blocked is None, reply
        assert says in (gen.error or ""), (reply, gen.error)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect",
                                    "308 Permanent Redirect"])
def test_a_redirect_is_one_error_naming_where_to(client: str, status: str) -> None:
    page = b"<html><head><title>Moved</title></head><body>Moved</body></html>"
    reply = response(page, status, ("location: https://gpu-box.example/v1/chat/completions",
                                    "content-type: text/html"))
    gen = one(reply, client, max_retries=3)
    assert not gen.ok and gen.text == ""
    assert "https://gpu-box.example/v1" in (gen.error or "") and "attempts" not in (gen.error or "")


@pytest.mark.parametrize("client", CLIENTS)
def test_invalid_utf8_in_the_answer_is_read_as_the_answer(client: str) -> None:
    # a server that cut a multi-byte character at max_tokens: the answer is there, one byte replaced
    body = completion("caf\u00e9 au lait").replace(b"\\u00e9", b"\xc3")
    gen = one(response(body, headers=(JSON,)), client)
    assert gen.ok and gen.text == "caf\ufffd au lait", gen.error


@pytest.mark.parametrize("client", CLIENTS)
def test_chunks_split_across_packets_are_read(client: str) -> None:
    body = completion()

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        for i in range(0, len(body), 7):
            piece = body[i:i + 7]
            for part in (f"{len(piece):x}\r\n".encode(), piece, b"\r\n"):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")

    (gen,), _ = ask(dribble, client=client)
    assert gen.ok and gen.text == "a real answer", gen.error


@pytest.mark.parametrize("client", CLIENTS)
def test_headers_then_silence_or_a_trickle_is_a_timeout(client: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(5)

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # a byte at a time, each well within the timeout: never done
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n")
        for _ in range(500):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)

    for handler in (silent, trickle):
        (gen,), _ = ask(handler, client=client, timeout=0.5, max_retries=0)
        assert not gen.ok and gen.text == "" and "timeout after 0.5s" in (gen.error or ""), gen


@pytest.mark.parametrize("client", CLIENTS)
def test_a_reset_mid_response_is_an_error(client: str) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 300\r\n\r\n" + completion()[:40])
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        writer.transport.abort()

    (gen,), _ = ask(reset, client=client)
    assert not gen.ok and gen.text == "" and "connection error" in (gen.error or ""), gen


@pytest.mark.parametrize("client", CLIENTS)
def test_a_keep_alive_connection_closed_as_the_next_request_arrives_is_retried_at_once(client: str) -> None:
    # the idle-timeout race: the server closes the connection the client just sent on, answering nothing
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(completion(), headers=(JSON,)))
        await writer.drain()
        await read_request(reader)

    gens, connections = ask(one_then_close, n=3, client=client, max_retries=0)
    assert [g.text for g in gens] == ["a real answer"] * 3, [g.error for g in gens]
    assert connections == 3


@pytest.mark.parametrize("client", CLIENTS)
def test_a_request_the_server_answered_part_of_is_not_sent_again_at_once(client: str) -> None:
    # bytes of an answer came back: the server had the request; it is retried (or not) as a failure
    async def answer_then_cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(completion(), headers=(JSON,)))
        await writer.drain()
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 300\r\n\r\n{")

    gens, connections = ask(answer_then_cut, n=2, client=client, max_retries=0)
    assert gens[0].ok and not gens[1].ok and "connection error" in (gens[1].error or "")
    assert connections == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_half_a_surrogate_pair_in_the_answer_is_read_as_text_that_can_be_stored(client: str) -> None:
    # a gateway that cut a string between the two halves of an emoji's UTF-16 escape: json reads a lone
    # surrogate, which no UTF-8 writer (SQLite, a report) takes
    body = completion("smile X").replace(b"X", b"\\ud83d")
    gen = one(response(body, headers=(JSON,)), client)
    assert gen.ok and gen.text == "smile \ufffd", gen.error
    gen.text.encode()


def test_a_server_that_redirects_its_model_listing_is_a_user_error_before_the_run() -> None:
    with serve(redirect="https://gpu-box.example") as server, \
            pytest.raises(UserError, match="redirects to https://gpu-box.example/v1/models") as info:
        OpenAIChatModel("m", server.url).content_hash()
    assert "https://gpu-box.example/v1" in info.value.fix


def recording(seen: list[bytes], reply: bytes | None = None) -> Handler:
    """Record each request on a connection and answer it with `reply` (a completion by default)."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(reply or response(completion(), headers=(JSON,)))
            await writer.drain()

    return handler


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("path", "target"), [
    ("/v1", "/v1/chat/completions"), ("/v1/", "/v1/chat/completions"),
    ("/team-a/llm/v1", "/team-a/llm/v1/chat/completions"),
    ("/openai/deployments/d?api-version=2024-10-21",
     "/openai/deployments/d/chat/completions?api-version=2024-10-21"),
    ("/v1/?api-version=2024-10-21", "/v1/chat/completions?api-version=2024-10-21"),
])
def test_the_request_goes_to_the_base_urls_path_and_query(client: str, path: str, target: str) -> None:
    seen: list[bytes] = []
    (gen,), _ = ask(recording(seen), path=path, client=client)
    assert gen.ok, gen.error
    assert seen[0].split(b"\r\n")[0] == f"POST {target} HTTP/1.1".encode()


@pytest.mark.parametrize("client", CLIENTS)
def test_an_ipv6_literal_host_is_reached(client: str) -> None:
    seen: list[bytes] = []
    try:
        (gen,), _ = ask(recording(seen), host="::1", client=client)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert gen.ok, gen.error
    assert b"host: [::1]:" in seen[0].lower()


@pytest.mark.parametrize("client", CLIENTS)
def test_credentials_in_the_url_are_sent_but_never_shown(client: str) -> None:
    seen: list[bytes] = []
    echo = response(b"bad gateway: Authorization Basic dXNlcjpzM2NyZXQ= s3cret", "502 Bad Gateway")
    (gen,), _ = ask(recording(seen, echo), path="/v1", url_host="user:s3cret@127.0.0.1", client=client,
                    max_retries=0)
    assert b"authorization: basic dxnlcjpzm2nyzxq=" in seen[0].lower()
    assert not gen.ok and "HTTP 502" in (gen.error or "")
    assert "s3cret" not in (gen.error or "") and "dXNlcjpzM2NyZXQ=" not in (gen.error or "")


def test_a_ref_with_azures_api_version_in_its_url_takes_it_as_api_version() -> None:
    # the URL as Azure's portal shows it: the ref's query is its options, so api-version is one of them
    model = load_model("openai:d@http://127.0.0.1:9/openai/deployments/d?api-version=2024-10-21")
    assert isinstance(model, OpenAIChatModel)
    assert model._path == "/openai/deployments/d/chat/completions?api-version=2024-10-21"


def through_proxy(url: str, monkeypatch: pytest.MonkeyPatch, no_proxy: str | None = None,
                  **options: object) -> tuple[Generation, list[bytes], list[bytes]]:
    """One request to `url` with HTTP_PROXY naming a loopback forward proxy (which answers itself) and a
    server on 127.0.0.1; the generation and the requests the proxy and the server saw."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    via_proxy: list[bytes] = []
    direct: list[bytes] = []

    async def main() -> Generation:
        async with raw_server(recording(via_proxy)) as (proxy_port, _), \
                raw_server(recording(direct)) as (port, _):
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
            if no_proxy is not None:
                monkeypatch.setenv("NO_PROXY", no_proxy)
            model = OpenAIChatModel("m", url.format(port=port), max_retries=0, **options)  # type: ignore[arg-type]
            try:
                return (await model.generate([ChatRequest(messages=(Message("user", "q"),))]))[0]
            finally:
                await model.aclose()

    return asyncio.run(main()), via_proxy, direct


def test_plain_http_goes_through_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # a host only the proxy can reach: going direct would fail to resolve it
    gen, via_proxy, direct = through_proxy("http://gpu-box.invalid:8000/v1", monkeypatch)
    assert gen.ok, gen.error
    assert via_proxy[0].startswith(b"POST http://gpu-box.invalid:8000/v1/chat/completions HTTP/1.1")
    assert direct == []


def test_a_host_no_proxy_names_is_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    gen, via_proxy, direct = through_proxy("http://127.0.0.1:{port}/v1", monkeypatch, no_proxy="127.0.0.1")
    assert gen.ok and via_proxy == [] and len(direct) == 1


def test_a_streamed_tool_call_is_put_back_together() -> None:
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "read_file", "arguments": ""}}
    text = sse(delta(role="assistant", tool_calls=[call]),
               delta(tool_calls=[{"index": 0, "function": {"arguments": '{"path": '}}]),
               delta(tool_calls=[{"index": 0, "function": {"arguments": '"notes.txt"}'}}]),
               delta("tool_calls")).decode()
    (choice,) = stream_completion(text)["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "read_file", "arguments": '{"path": "notes.txt"}'}}]


TOOLS = ({"type": "function", "function": {"name": "send_money", "parameters": {"type": "object"}}},)


def streamed_reply(body: bytes, client: str) -> Generation:
    """A streamed reply to a tool-calling request, as the client reads it."""
    async def main() -> Generation:
        stream = response(body, headers=("content-type: text/event-stream",))
        async with raw_server(answer_with(stream)) as (port, _):
            model = OpenAIChatModel("m", f"http://127.0.0.1:{port}/v1", max_retries=0, client=client)
            try:
                [gen] = await model.generate([ChatRequest(messages=(Message("user", "q"),), tools=TOOLS)])
            finally:
                await model.aclose()
            return gen
    return asyncio.run(main())


def call(name: str, arguments: str, **fields: object) -> dict[str, object]:
    return {**fields, "type": "function", "function": {"name": name, "arguments": arguments}}


def more(arguments: str, **fields: object) -> dict[str, object]:
    return {**fields, "function": {"arguments": arguments}}


@pytest.mark.parametrize("client", CLIENTS)
def test_a_streamed_legacy_function_call_is_a_call(client: str) -> None:
    # the functions API streamed: the name in the first delta, the arguments in pieces. Not collected,
    # the reply had no answer and no call, and the attempt ended as an error.
    body = sse(delta(role="assistant", function_call={"name": "send_money", "arguments": ""}),
               delta(function_call={"arguments": '{"to": "GB00'}),
               delta(function_call={"arguments": 'EVIL", "amount": 5}'}), delta("function_call"))
    gen = streamed_reply(body, client)
    assert gen.ok and gen.finish_reason == "function_call", gen.error
    assert parse_reply(gen.text).calls == (ToolCall("send_money", {"to": "GB00EVIL", "amount": 5}),)


# What servers stream for two parallel calls: OpenAI numbers them and interleaves nothing; some servers
# interleave the pieces by index; Gemini's compatibility endpoint sends whole calls without an index;
# Ollama numbers every call 0, each with its own id.
PARALLEL = {
    "indexed": [[call("send_money", "", index=0, id="a")], [more('{"to": "X", ', index=0)],
                [more('"amount": 5}', index=0)], [call("get_balance", "", index=1, id="b")],
                [more("{}", index=1)]],
    "interleaved": [[call("send_money", "", index=0, id="a")], [call("get_balance", "", index=1, id="b")],
                    [more('{"to": "X", ', index=0)], [more("{}", index=1)], [more('"amount": 5}', index=0)]],
    "no_index": [[call("send_money", '{"to": "X", "amount": 5}', id="a"), call("get_balance", "{}", id="b")]],
    "no_index_no_id": [[call("send_money", '{"to": "X", ')], [more('"amount": 5}')],
                       [call("get_balance", "")]],
    "index_reused": [[call("send_money", '{"to": "X", "amount": 5}', index=0, id="a")],
                     [call("get_balance", "{}", index=0, id="b")]],
}


@pytest.mark.parametrize("shape", sorted(PARALLEL))
def test_streamed_parallel_calls_are_each_put_back_together(shape: str) -> None:
    # merged into one, the two calls' names and arguments ran together: one malformed block, and a
    # payment the model made was never made
    body = sse(*(delta(role="assistant", tool_calls=c) for c in PARALLEL[shape]), delta("tool_calls"))
    gen = streamed_reply(body, "auto")
    assert gen.ok, gen.error
    reply = parse_reply(gen.text)
    assert reply.malformed == () and reply.calls == (ToolCall("send_money", {"to": "X", "amount": 5}),
                                                     ToolCall("get_balance", {})), gen.text


@pytest.mark.parametrize("client", CLIENTS)
def test_a_200_that_is_only_an_error_object_says_the_error(client: str) -> None:
    body = json.dumps({"error": {"message": "upstream timed out", "type": "gateway_timeout"}}).encode()
    gen = one(response(body, headers=(JSON,)), client)
    assert not gen.ok and gen.text == ""
    assert (gen.error or "").startswith("HTTP 200 carrying an error: upstream timed out"), gen.error


@pytest.mark.parametrize("client", CLIENTS)
def test_a_slow_first_byte_within_the_timeout_is_waited_for(client: str) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.5)  # a model thinking: no byte for a while, then the whole answer
        writer.write(response(completion(), headers=(JSON,)))

    (gen,), _ = ask(slow, client=client, timeout=5, max_retries=0)
    assert gen.ok and gen.text == "a real answer", gen.error


@pytest.mark.parametrize("url", ["http://gpu-box.invalid:8000/v1", "https://api.example.com/v1"])
def test_a_socks_proxy_httpx_cannot_use_is_a_user_error(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    if importlib.util.find_spec("socksio") is not None:
        pytest.skip("httpx's socks extra is installed here: the proxy is usable")
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(UserError, match="SOCKS") as info:
        load_model(f"openai:m@{url}")
    assert "httpx[socks]" in info.value.fix and "NO_PROXY" in info.value.fix


def test_a_proxy_that_asks_for_credentials_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    refused = response(b"<html>Proxy Authentication Required</html>", "407 Proxy Authentication Required",
                       ('proxy-authenticate: Basic realm="corp"', "content-type: text/html"))

    async def main() -> None:
        async with raw_server(answer_with(refused)) as (proxy_port, _):
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
            model = OpenAIChatModel("m", "http://gpu-box.invalid:8000/v1")
            with pytest.raises(UserError, match="HTTP 407") as info:
                await asyncio.to_thread(model.content_hash)
            assert "HTTP_PROXY" in info.value.fix

    asyncio.run(main())


def test_a_model_listing_that_trickles_is_a_user_error_within_the_timeout() -> None:
    # httpx's timeout bounds each read: a listing sent a byte at a time would hold the run's start forever
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n")
        for _ in range(500):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)

    async def main() -> None:
        async with raw_server(trickle) as (port, _):
            model = OpenAIChatModel("m", f"http://127.0.0.1:{port}/v1", timeout=0.5)
            with pytest.raises(UserError, match="model listing"):
                await asyncio.wait_for(asyncio.to_thread(model.content_hash), 5)

    asyncio.run(main())


def _limited(*headers: str, body: bytes = b'{"error":{"message":"Rate limit reached"}}',
             ) -> tuple[Handler, list[int]]:
    """A server that answers every request with a 429 carrying `headers`; the list counts the requests."""
    seen: list[int] = []
    limited = response(body, "429 Too Many Requests", (JSON, *headers))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            seen.append(1)
            writer.write(limited)
            await writer.drain()

    return handler, seen


@pytest.mark.parametrize("hint", ["retry-after: 0", "retry-after: Wed, 21 Oct 2015 07:28:00 GMT"],
                         ids=["zero", "date-past"])
def test_a_429_hint_of_no_wait_backs_off_instead_of_hammering(hint: str) -> None:
    # "0", or a date already past (the server's clock behind ours), is no wait at all: taken at its word,
    # every request of a burst would come straight back, hundreds of times within max_pause
    handler, seen = _limited(hint)
    (gen,), _ = ask(handler, max_pause=1.0)
    assert gen.error is not None and "429" in gen.error
    assert len(seen) <= 3  # backoff from 0.5 s: the second wait already passes max_pause


def test_openai_ratelimit_reset_headers_are_the_wait_of_a_429() -> None:
    # OpenAI sends no retry-after on many 429s, but says when the spent limit resets: "6m0s" here, far
    # past max_pause, so the attempt is an error at once instead of backing off into the same limit
    handler, seen = _limited("x-ratelimit-limit-requests: 10000", "x-ratelimit-remaining-requests: 0",
                             "x-ratelimit-reset-requests: 6m0s", "x-ratelimit-remaining-tokens: 149984",
                             "x-ratelimit-reset-tokens: 6ms")
    (gen,), _ = ask(handler, max_pause=5.0)
    assert gen.error is not None and "429" in gen.error and len(seen) == 1


@pytest.mark.parametrize(("headers", "wait"), [
    ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}, 1.0),
    ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m30.5s"}, 90.5),
    ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20ms",
      "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1h2m3s"}, 3723.0),
    ({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "6m0s"}, None),  # not this one
    ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "soon"}, None),
    ({"retry-after": "2", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, 2.0),
])
def test_the_wait_a_429_names(headers: dict[str, str], wait: float | None) -> None:
    assert openai_http._rate_limit_hint(headers) == wait


def test_a_529_overloaded_is_paced_like_a_429_not_spent_as_retries() -> None:
    # Anthropic's 529 (and gateways in front of it): the service is up and over capacity, as a 429 says
    # for one client. At scale most requests of a burst see it a few times; spending retries on it made
    # some attempts errors on a healthy endpoint.
    overloaded = response(b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
                          "529 Site Overloaded", (JSON,))
    ok = response(completion(), headers=(JSON,))
    (gen,), _ = ask(answer_with(overloaded, overloaded, overloaded, ok), max_retries=1)
    assert gen.ok and gen.text == "a real answer"


@pytest.mark.parametrize("status", ["503 Service Unavailable", "529 Site Overloaded"])
def test_a_model_listing_the_server_is_too_busy_for_is_no_entry(status: str) -> None:
    # read as "lists no entry", a busy moment would be hashed into the model, and the resume of the run
    # refused once the server lists it again
    busy = response(b'{"error":{"message":"busy"}}', status, (JSON,))

    async def main() -> None:
        async with raw_server(answer_with(busy)) as (port, _):
            model = OpenAIChatModel("m", f"http://127.0.0.1:{port}/v1")
            with pytest.raises(UserError, match="model listing failed for now"):
                await asyncio.to_thread(model.content_hash)

    asyncio.run(main())


def test_a_429_whose_wait_fits_max_pause_is_waited_whatever_the_jitter() -> None:
    # the jitter spreads a burst's retries; added on top of a hint that just fits max_pause, it made the
    # attempt an error at once, without a retry (a hint of 450 s under a 600 s pause: two times in three)
    limited = response(b'{"error":{"message":"Rate limit reached"}}', "429 Too Many Requests",
                       (JSON, "retry-after: 1"))
    (gen,), _ = ask(answer_with(limited, response(completion(), headers=(JSON,))), max_pause=1.0)
    assert gen.ok and gen.text == "a real answer"


def test_a_429_for_a_spent_quota_is_an_outage_not_a_rate_limit() -> None:
    # OpenAI's 429 `insufficient_quota` (credits or monthly budget spent) lifts only when someone pays:
    # paced like a rate limit, every attempt of the run would wait out max_pause before its error (hours
    # for a suite). As an endpoint failing every request, the run pauses once, then stops resumably.
    body = (b'{"error":{"message":"You exceeded your current quota, please check your plan and billing '
            b'details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}')
    spent, _ = _limited(body=body)
    with pytest.raises(EndpointUnavailable, match="quota"):
        ask(spent, n=2, max_pause=1.0, cooldown=0.2, breaker=2, max_retries=1)
