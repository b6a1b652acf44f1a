"""The openai: backend against what real servers, gateways and proxies send on the wire: raw loopback
servers (tunesafe.testing.raw_http) answering byte for byte, over both transports (client=auto is
tunesafe.models.http1 for plain http, client=httpx what https and proxies use)."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from tunesafe.models.openai_http import OpenAIChatModel
from tunesafe.testing.raw_http import Handler, answer_with, completion, raw_server, read_request, response
from tunesafe.types import ChatRequest, Generation, Message

CLIENTS = ["auto", "httpx"]
JSON = "content-type: application/json"


def ask(handler: Handler, n: int = 1, host: str = "127.0.0.1", url_host: str | None = None,
        path: str = "/v1", **options: object) -> tuple[list[Generation], int]:
    """Send n requests one after another to a raw server; the generations and the connections made."""
    async def main() -> tuple[list[Generation], int]:
        async with raw_server(handler, host) as (port, connections):
            name = url_host or host
            shown = f"[{name}]" if ":" in name else name
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
