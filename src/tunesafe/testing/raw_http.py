"""A raw TCP server on loopback for byte-level HTTP behaviours the loopback OpenAI server (uvicorn) never
shows: chunks split across packets, bodies a gateway compressed unasked, a keep-alive connection closed
as the next request arrives, headers followed by silence, a forward proxy. Runs in the caller's event
loop; `handler` owns each connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server on `host` running `handler` per connection; yields the port and a list that counts
    connections."""
    connections: list[int] = []
    handlers: set[asyncio.Task[object]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: what a test of the client looks at is the client
        except asyncio.CancelledError:
            pass  # ended with the server (below): a handler cancelled out of asyncio's callback is logged
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, host, 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()
        for task in handlers:  # a handler still waiting on a client that left: end it here, quietly
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request, head and body (by its content-length; none without one)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
               if line.lower().startswith(b"content-length:")]
    return head + (await reader.readexactly(lengths[0]) if lengths else b"")


def answer_with(*replies: bytes) -> Handler:
    """Answer the n-th request on a connection with replies[n]; close after the last."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in replies:
            await read_request(reader)
            writer.write(reply)
            await writer.drain()

    return handler


def response(body: bytes, status: str = "200 OK", headers: tuple[str, ...] = (),
             length: bool = True) -> bytes:
    """An HTTP/1.1 response; `length`: with a content-length header (else the body runs to the close)."""
    lines = [f"HTTP/1.1 {status}", *headers, *([f"content-length: {len(body)}"] if length else [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def completion(content: str = "a real answer", **choice: Any) -> bytes:
    """A chat completion's JSON body."""
    return json.dumps({"id": "c1", "object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content},
         **choice}], "usage": {"prompt_tokens": 1, "completion_tokens": 3}}).encode()
