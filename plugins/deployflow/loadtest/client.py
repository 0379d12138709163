"""A minimal HTTP/1.1 client connection, built for many small requests per second.

One request at a time per connection (no pipelining), responses parsed by httptools.
Kept alive between requests, and reopened when the server closes it: azmlinfsrv
answers every request with `Connection: close`, so that path is the common one.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from typing import cast

import httptools

from deployflow.loadtest.spec import RequestSpec

SERVER_TIME_HEADER = b"x-ms-run-fn-exec-ms"  # azmlinfsrv: ms spent in the user's run()

# Error classes of requests that got no HTTP response (see LoadResult.errors).
CONNECT = "connect"
RESET = "reset"
PROTOCOL = "protocol"
TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class Response:
    """What the load generator keeps of a response: its status and the server's own timing."""

    status: int
    server_ms: float | None


class RequestFailed(Exception):
    """A request that got no complete HTTP response; `kind` is the error class reported."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass(frozen=True)
class Target:
    """Where to connect, resolved once per run so that reconnects cost no DNS lookup."""

    address: str
    port: int
    family: int
    server_hostname: str | None = None
    ssl_context: ssl.SSLContext | None = None


async def resolve(spec: RequestSpec) -> Target:
    """Resolve the URL's host; an unknown host fails the run rather than every request."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(spec.host, spec.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"cannot resolve host {spec.host!r} of {spec.url}: {exc}") from exc
    family, _, _, _, sockaddr = infos[0]
    if spec.tls:
        return Target(sockaddr[0], spec.port, family, spec.host, ssl.create_default_context())
    return Target(sockaddr[0], spec.port, family)


class _HttpProtocol(asyncio.Protocol):
    """Feeds bytes to httptools and resolves the pending request's future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = False
        self.got_bytes = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._status = 0
        self._server_ms: float | None = None
        self._framed = False
        self._headers_done = False

    def request(self, payload: bytes, waiter: asyncio.Future[Response]) -> None:
        assert self.transport is not None and self._waiter is None
        self._waiter = waiter
        self.got_bytes = False
        self.transport.write(payload)

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.reusable = True

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(RequestFailed(PROTOCOL, f"invalid HTTP response: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        self.reusable = False
        return False  # let the transport close; connection_lost settles the request

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._headers_done and not self._framed and exc is None:
            self._succeed()  # a body delimited by the close itself
        else:
            self._fail(RequestFailed(RESET, str(exc) if exc else "server closed the connection"))

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._status = 0
        self._server_ms = None
        self._framed = False
        self._headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == SERVER_TIME_HEADER:
            try:
                self._server_ms = float(value)
            except ValueError:
                self._server_ms = None
        elif lowered in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status = self._parser.get_status_code()
        if not self._parser.should_keep_alive():
            self.reusable = False

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:
            self._headers_done = False  # an interim response: the real one follows
            return
        self._succeed()

    def _succeed(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            self.reusable = False  # a response nobody asked for: the stream is out of step
            return
        waiter.set_result(Response(self._status, self._server_ms))

    def _fail(self, error: RequestFailed) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class Connection:
    """One slot's connection: opened lazily, reused while the server keeps it alive."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._proto: _HttpProtocol | None = None

    async def send(self, payload: bytes) -> Response:
        """Send one request and wait for its response; raises RequestFailed."""
        proto = self._proto
        if proto is not None and proto.reusable:
            try:
                return await self._exchange(proto, payload)
            except RequestFailed as exc:
                if exc.kind != RESET or proto.got_bytes:
                    raise
                # The server closed this idle connection just as it was reused, before
                # answering anything: send once more on a fresh connection.
        return await self._exchange(await self._open(), payload)

    def close(self) -> None:
        if self._proto is not None:
            self._proto.close()
            self._proto = None

    async def _exchange(self, proto: _HttpProtocol, payload: bytes) -> Response:
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        proto.request(payload, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Timed out: a late response must not be taken for the next request's.
            proto.abort()
            self._proto = None
            raise

    async def _open(self) -> _HttpProtocol:
        # Closing only now lets a server that said `Connection: close` close first,
        # which leaves TIME_WAIT on its side rather than eating our ephemeral ports.
        self.close()
        target = self._target
        try:
            _, proto = await asyncio.get_running_loop().create_connection(
                _HttpProtocol,
                host=target.address,
                port=target.port,
                family=target.family,
                ssl=target.ssl_context,
                server_hostname=target.server_hostname,
            )
        except OSError as exc:  # refused, unreachable, TLS handshake (ssl.SSLError is an OSError)
            raise RequestFailed(CONNECT, str(exc) or type(exc).__name__) from exc
        self._proto = proto
        return proto
