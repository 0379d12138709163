"""A minimal HTTP/1.1 client connection, built for many small requests per second.

One request at a time per connection (no pipelining), responses parsed by httptools.
Kept alive between requests, and reopened when the server closes it: azmlinfsrv
answers every request with `Connection: close`, so that path is the common one.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl
import time
from dataclasses import dataclass
from typing import cast

import httptools

from deployflow.loadtest.guard import require_loopback
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
    """Resolve the URL's host; an unknown host fails the run rather than every request.

    The address actually used is checked again, so a name cannot smuggle a remote target.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(spec.host, spec.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"cannot resolve host {spec.host!r} of {spec.url}: {exc}") from exc
    family, _, _, _, sockaddr = infos[0]
    if not spec.allow_remote:
        require_loopback(sockaddr[0], spec.url)
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
    """One slot's connection: opened lazily, reused while the server keeps it alive.

    A request's deadline is enforced by `expire()`, which the generator calls for every
    connection a few times per timeout: one sweep instead of a timer per request, which
    at tens of thousands of requests per second is a fifth of the generator's CPU.
    """

    def __init__(self, target: Target) -> None:
        self._target = target
        self._loop = asyncio.get_running_loop()
        self._proto: _HttpProtocol | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._deadline = math.inf

    async def send(self, payload: bytes, deadline: float) -> Response:
        """Send one request and wait for its response until `deadline` (time.monotonic()).

        Raises RequestFailed, of kind TIMEOUT once the deadline has passed.
        """
        self._deadline = deadline
        proto = self._proto
        fresh = proto is None or not proto.reusable
        try:
            if fresh:
                proto = await self._open(deadline)
            while True:
                waiter = self._loop.create_future()
                self._waiter = waiter
                proto.request(payload, waiter)
                try:
                    return await waiter
                except RequestFailed as exc:
                    if exc.kind == RESET and not (fresh or proto.got_bytes):
                        # The server closed this idle connection just as it was reused,
                        # before answering anything: send once more on a fresh connection.
                        fresh = True
                        proto = await self._open(deadline)
                        continue
                    if exc.kind == TIMEOUT:
                        self._discard()  # a late response must not be taken for the next request's
                    raise
                except asyncio.CancelledError:
                    self._discard()
                    raise
        finally:
            self._waiter = None
            self._deadline = math.inf

    def expire(self, now: float) -> None:
        """Fail the response being waited for if its deadline is past `now`."""
        waiter = self._waiter
        if waiter is not None and now >= self._deadline and not waiter.done():
            waiter.set_exception(RequestFailed(TIMEOUT, "no response before the deadline"))

    def close(self) -> None:
        if self._proto is not None:
            self._proto.close()
            self._proto = None

    def _discard(self) -> None:
        if self._proto is not None:
            self._proto.abort()
            self._proto = None

    async def _open(self, deadline: float) -> _HttpProtocol:
        # Closing only now lets a server that said `Connection: close` close first,
        # which leaves TIME_WAIT on its side rather than eating our ephemeral ports.
        self.close()
        target = self._target
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                _, proto = await self._loop.create_connection(
                    _HttpProtocol,
                    host=target.address,
                    port=target.port,
                    family=target.family,
                    ssl=target.ssl_context,
                    server_hostname=target.server_hostname,
                )
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            raise RequestFailed(TIMEOUT, "no connection before the deadline") from exc
        except OSError as exc:  # refused, unreachable, TLS handshake (ssl.SSLError is an OSError)
            raise RequestFailed(CONNECT, str(exc) or type(exc).__name__) from exc
        self._proto = proto
        return proto
