"""One keep-alive HTTP/1.1 connection on asyncio, with h11 (the parser httpx uses) doing the protocol.

Why not httpx on this path: at 64 requests in flight against a local server, httpx's layers (URL and
header models, anyio cancel scopes, its connection pool) cost ~0.6 ms of CPU per request against
~0.1 ms here, and on two cores that CPU is what kept benchmarks/backends.py under 90% of the ideal
throughput (docs/decisions.md "HTTP backend"). Plain http:// only: TLS and proxies stay with httpx.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from typing import NamedTuple, cast

import h11


class Response(NamedTuple):
    status_code: int
    headers: dict[str, str]  # lower-case names
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Stream(asyncio.Protocol):
    """Buffers what arrives and wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        self._eof = False
        self._expired = False
        self._waiter: asyncio.Future[None] | None = None
        self.answered = False  # a byte arrived since the current request went out

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass (Ray's async actors run on uvloop)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.answered = True
        self._chunks.append(data)
        self._wake()

    def eof_received(self) -> None:
        self._eof = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()

    def expire(self) -> None:
        """The attempt's deadline passed: the waiting read (or the next one) raises TimeoutError."""
        self._expired = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def usable(self) -> bool:
        """Still open and silent: a server that closed an idle keep-alive connection is noticed here, not
        mid-request, and so is one that wrote on it unasked (a 408 before closing it), whose bytes would
        otherwise be read as the next request's answer."""
        return not self._eof and not self._chunks and self.transport is not None \
            and not self.transport.is_closing()

    async def read(self) -> bytes:
        """What has arrived, waiting for it if nothing has; b"" once the peer closed."""
        if not self._chunks and not self._eof and not self._expired:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._expired:
            raise TimeoutError
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class Http1Connection:
    """Requests to one http:// origin, one at a time, over a connection kept open between them and
    reopened when the server closed it. Raises TimeoutError (the whole request, connect included,
    took longer than `timeout`) or ConnectionError (refused, dropped, not HTTP); the connection is then
    closed, so the next request starts on a fresh one."""

    def __init__(self, host: str, port: int, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.host = host
        self.port = port
        name = f"[{host}]" if ":" in host else host  # an IPv6 address
        netloc = name if port == 80 else f"{name}:{port}"
        # identity: without an Accept-Encoding a server may compress as it likes (RFC 9110 12.5.3)
        self._headers = [(b"host", netloc.encode()), (b"accept-encoding", b"identity"),
                         *((k.encode(), v.encode()) for k, v in headers)]
        self._stream: _Stream | None = None
        self._h11: h11.Connection | None = None

    async def request(self, method: str, target: str, body: bytes, timeout: float,
                      headers: Sequence[tuple[str, str]] = ()) -> Response:
        """`headers` go with this request only (after the connection's own)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            stream: _Stream | None = None
            try:
                stream, conn, reused = await self._connection(deadline)
                timer = loop.call_at(deadline, stream.expire)
                try:
                    return await self._exchange(stream, conn, method, target, body, headers)
                finally:
                    timer.cancel()
            except TimeoutError:
                self.close()
                raise TimeoutError(f"no complete response within {timeout:g}s") from None
            except (OSError, h11.ProtocolError) as exc:
                self.close()
                # The keep-alive race: the server closed this idle connection as the request went out.
                # Not a byte of answer came back, so once more on a fresh connection, no failure counted
                # (a dropped request is sent again by the caller's retries anyway; this one only skips
                # their backoff). Any byte of an answer: the server had it, the caller decides.
                if stream is not None and reused and not stream.answered:
                    continue
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
            except BaseException:  # cancelled mid-request: the connection's state is unknown
                self.close()
                raise

    async def _connection(self, deadline: float) -> tuple[_Stream, h11.Connection, bool]:
        """The connection for the next request, and whether it served one before."""
        if self._stream is not None and self._h11 is not None and self._stream.usable \
                and not self._h11.trailing_data[0]:  # nor bytes that came after the last answer
            return self._stream, self._h11, True
        self.close()
        loop = asyncio.get_running_loop()
        try:
            _, stream = await asyncio.wait_for(loop.create_connection(_Stream, self.host, self.port),
                                               max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            raise TimeoutError from None
        self._stream, self._h11 = stream, h11.Connection(h11.CLIENT)
        return stream, self._h11, False

    async def _exchange(self, stream: _Stream, conn: h11.Connection, method: str, target: str,
                        body: bytes, extra: Sequence[tuple[str, str]]) -> Response:
        headers = [*self._headers, *((k.encode(), v.encode()) for k, v in extra),
                   (b"content-length", str(len(body)).encode())]
        request = h11.Request(method=method, target=target, headers=headers)
        assert stream.transport is not None
        stream.answered = False
        # One write, so the request leaves as one segment (one wake-up of the server, not three).
        stream.transport.write(b"".join(
            conn.send(event) or b"" for event in (request, h11.Data(data=body), h11.EndOfMessage())))
        event = await _next_event(stream, conn)
        while isinstance(event, h11.InformationalResponse):  # e.g. 100 Continue: the answer follows
            event = await _next_event(stream, conn)
        if not isinstance(event, h11.Response):
            raise h11.RemoteProtocolError(f"expected a response, got {type(event).__name__}")
        status, headers_in = event.status_code, {k.decode(): v.decode("latin-1") for k, v in event.headers}
        chunks = []
        while not isinstance(event := await _next_event(stream, conn), h11.EndOfMessage):
            if not isinstance(event, h11.Data):
                raise h11.RemoteProtocolError(f"expected the body, got {type(event).__name__}")
            chunks.append(bytes(event.data))
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:  # the server said Connection: close, or ended the body by closing
            self.close()
        return Response(status, headers_in, _decoded(headers_in, b"".join(chunks)))

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._stream is not None and self._stream.transport is not None:
            self._stream.transport.close()
        self._stream = self._h11 = None


def _decoded(headers: dict[str, str], body: bytes) -> bytes:
    """The body a gateway gzip- or deflate-compressed although identity was asked for (some do), its
    content-encoding header then dropped. Another encoding stays as sent, header and all, for the
    caller to refuse by name rather than read compressed bytes as the reply."""
    coding = headers.get("content-encoding", "").strip().lower()
    if coding not in ("gzip", "x-gzip", "deflate"):
        return body
    try:
        if coding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send it
            try:
                body = zlib.decompress(body)
            except zlib.error:
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        else:
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
    except zlib.error as exc:
        raise h11.RemoteProtocolError(f"a {coding} body that does not decompress: {exc}") from None
    del headers["content-encoding"]
    return body


async def _next_event(stream: _Stream, conn: h11.Connection) -> object:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await stream.read())
    return event
