"""tunesafe.models.http1, the lean HTTP/1.1 connection of the openai: backend, against raw asyncio
servers on 127.0.0.1 that answer the ways the loopback OpenAI server never does (chunked, 100 Continue,
close-delimited, cut short, not HTTP, silent). The backend over it: test_openai_http.py."""

from __future__ import annotations

import asyncio

import pytest

from tunesafe.models.http1 import Http1Connection
from tunesafe.testing.raw_http import Handler, answer_with, raw_server, read_request

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_keeps_the_connection_and_reopens_one_the_server_closed() -> None:
    async def main() -> None:
        async with raw_server(answer_with(OK, OK)) as (port, connections):
            conn = Http1Connection("127.0.0.1", port)
            for _ in range(2):
                assert (await conn.request("POST", "/x", b"{}", 5)).content == b"ok"
            assert len(connections) == 1  # both on one connection
            await asyncio.sleep(0.1)  # the server hung up after its second answer (an idle timeout)
            response = await conn.request("POST", "/x", b"{}", 5)
            assert response.status_code == 200 and len(connections) == 2
            await conn.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\n{\"a\": \r\n2\r\n1}\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"a\": 1}",
    b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{\"a\": 1}",  # the body ends when the server closes
    b"HTTP/1.0 200 OK\r\n\r\n{\"a\": 1}",  # an old proxy's HTTP/1.0: no keep-alive, close-delimited
], ids=["chunked", "100-continue", "close-delimited", "http-1.0"])
def test_reads_every_way_a_body_can_arrive(reply: bytes) -> None:
    async def main() -> None:
        async with raw_server(answer_with(reply)) as (port, _):
            response = await Http1Connection("127.0.0.1", port).request("POST", "/x", b"{}", 5)
            assert (response.status_code, response.content) == (200, b'{"a": 1}')

    asyncio.run(main())


def test_sends_one_well_formed_request() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(b"HTTP/1.1 429 Too Many\r\nretry-after: 7\r\ncontent-length: 0\r\n\r\n")

    async def main() -> None:
        async with raw_server(record) as (port, _):
            conn = Http1Connection("127.0.0.1", port, [("authorization", "Bearer k")])
            response = await conn.request("POST", "/v1/chat/completions", b'{"q": 1}', 5)
            assert response.status_code == 429 and response.headers["retry-after"] == "7"

    asyncio.run(main())
    head, body = seen[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1" and body == b'{"q": 1}'
    assert {b"authorization: Bearer k", b"content-length: 8"} <= set(lines)
    assert any(line.startswith(b"host: 127.0.0.1:") for line in lines)


@pytest.mark.parametrize(("handler", "message"), [
    (answer_with(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), "RemoteProtocolError"),
    (answer_with(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf"), "peer closed"),
    (answer_with(), "RemoteProtocolError"),  # closes without answering
], ids=["not-http", "cut-short", "no-answer"])
def test_broken_answers_raise_connection_error(handler: Handler, message: str) -> None:
    async def main() -> None:
        async with raw_server(handler) as (port, _):
            with pytest.raises(ConnectionError, match=message):
                await Http1Connection("127.0.0.1", port).request("POST", "/x", b"{}", 5)

    asyncio.run(main())


def test_deadline_covers_the_whole_request_and_refused_connects_are_connection_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async def main() -> None:
        async with raw_server(silent) as (port, _):
            conn = Http1Connection("127.0.0.1", port)
            with pytest.raises(TimeoutError, match="within 0.2s"):
                await conn.request("POST", "/x", b"{}", 0.2)
        with pytest.raises(ConnectionError, match="ConnectionRefusedError"):
            await conn.request("POST", "/x", b"{}", 5)  # the server is gone: nothing listens there

    asyncio.run(main())



@pytest.mark.parametrize("gap", [0.0, 0.05], ids=["with-the-answer", "later"])
def test_bytes_the_server_sent_while_the_connection_was_idle_are_no_answer(gap: float) -> None:
    # some servers write "408 Request Timeout" on an idle keep-alive connection before closing it: read
    # as the answer to the next request, it would fail (or answer) a request it never saw
    async def stale_408(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        if gap:
            await asyncio.sleep(gap)
        writer.write(b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)  # and closes only later

    async def main() -> None:
        async with raw_server(stale_408) as (port, connections):
            conn = Http1Connection("127.0.0.1", port)
            assert (await conn.request("POST", "/x", b"{}", 5)).content == b"ok"
            await asyncio.sleep(0.2)  # the 408 arrives while the connection is idle
            response = await conn.request("POST", "/x", b"{}", 5)
            assert response.status_code == 200 and len(connections) == 2
            await conn.aclose()

    asyncio.run(main())
