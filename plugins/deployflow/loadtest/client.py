"""A minimal HTTP/1.1 client connection, built for many small requests per second.

One request at a time per connection (no pipelining), responses parsed by httptools.
Kept alive between requests, and reopened when the server closes it: azmlinfsrv
answers every request with `Connection: close`, so that path is the common one.

Driven by callbacks: a request's outcome goes to its owner's `answered` or `failed`
straight from the event loop's read callback, so the owner can send the next request
there and then. A future and a coroutine step per request cost the generator more CPU
than the rest of the request together. The requests sent while the loop works through
its ready sockets go out together after them (WriteBatch), as wrk's do: the server then
finds several at each wake-up, which saves CPU on both sides.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Protocol, cast

import httptools

from deployflow.loadtest.guard import require_loopback
from deployflow.loadtest.spec import RequestSpec

SERVER_TIME_HEADER = b"x-ms-run-fn-exec-ms"  # azmlinfsrv: ms spent in the user's run()
_FRAMING_HEADERS = (b"content-length", b"transfer-encoding")
# Header names are told apart by length first: most are of none of these, and need no lower().
_WATCHED_LENGTHS = frozenset(len(name) for name in (SERVER_TIME_HEADER, *_FRAMING_HEADERS))

# Error classes of requests that got no HTTP response (see LoadResult.errors).
CONNECT = "connect"
RESET = "reset"
PROTOCOL = "protocol"
TIMEOUT = "timeout"


class Owner(Protocol):
    """Who hears how each request on a Connection ended; either may send the next one at once."""

    def answered(self, status: int, server_ms: float | None) -> None:
        """A whole response came back: its status and the server's own time, if it said."""

    def failed(self, kind: str) -> None:
        """No response: `kind` is the error class (CONNECT, RESET, PROTOCOL or TIMEOUT)."""


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


class WriteBatch:
    """Requests to write once the event loop has run the callbacks that are ready now.

    One per run: `flush()` writes them (the load's own code calls it before it sleeps);
    otherwise a callback scheduled with the first request does.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pending: list[_HttpProtocol] = []

    def add(self, proto: _HttpProtocol) -> None:
        self._pending.append(proto)
        if len(self._pending) == 1:
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for proto in pending:
            if proto.waiting:  # not timed out or closed meanwhile (then its transport is gone too)
                proto.transport.write(proto.payload)  # type: ignore[union-attr]


class _HttpProtocol(asyncio.Protocol):
    """One TCP connection: writes a request, feeds the answer to httptools, reports how it ended."""

    def __init__(self, conn: Connection, owner: Owner, payload: bytes, batch: WriteBatch) -> None:
        self._conn = conn
        self._owner = owner  # answers go straight to it; failures through the Connection, which may retry
        self.payload = payload
        self._batch = batch
        self.transport: asyncio.Transport | None = None
        self.reusable = False
        self.waiting = False  # a request is out and not yet settled
        self.got_bytes = False
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._server_ms: float | None = None
        self._framed = False
        self._headers_done = False
        self._complete = False

    def request(self) -> None:
        """Send the request with the batch: soon, not now (see WriteBatch)."""
        assert self.transport is not None and not self.waiting
        self.waiting = True
        self.got_bytes = False
        self._status = 0
        self._server_ms = None
        self._framed = False
        self._headers_done = False
        self._batch.add(self)

    def close(self) -> None:
        self.reusable = False
        self.waiting = False
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.reusable = False
        self.waiting = False
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
            broken = False
        except httptools.HttpParserError:
            broken = True
        # Settled only now, outside the parser's callbacks: the owner may send the next request.
        complete, self._complete = self._complete, False
        waiting = self.waiting
        if broken:
            self.abort()  # first, so that a next request goes on a new connection
        if complete:  # even if garbage follows: that response came whole
            self.waiting = False
            self._owner.answered(self._status, self._server_ms)
        elif broken and waiting:
            self._conn._failed(self, PROTOCOL)

    def eof_received(self) -> bool:
        self.reusable = False
        return False  # let the transport close; connection_lost settles the request

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if not self.waiting:
            return
        self.waiting = False
        if self._headers_done and not self._framed and exc is None:
            self._owner.answered(self._status, self._server_ms)  # a body delimited by the close itself
        else:
            self._conn._failed(self, RESET)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) not in _WATCHED_LENGTHS:
            return
        lowered = name.lower()
        if lowered == SERVER_TIME_HEADER:
            try:
                self._server_ms = float(value)
            except ValueError:
                self._server_ms = None
        elif lowered in _FRAMING_HEADERS:
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
        if self._complete or not self.waiting:
            self.reusable = False  # a response nobody asked for: the stream is out of step
            return
        self._complete = True


class Connection:
    """One slot's connection: opened lazily, reused while the server keeps it alive.

    `send` returns at once; the outcome goes to the owner. A request's deadline is
    enforced by `expire()`, which the generator calls for every connection a few times
    per timeout: one sweep instead of a timer per request, which at tens of thousands
    of requests per second is a fifth of the generator's CPU.
    """

    def __init__(self, target: Target, payload: bytes, owner: Owner, batch: WriteBatch) -> None:
        self._target = target
        self._payload = payload
        self._owner = owner
        self._batch = batch
        self._loop = asyncio.get_running_loop()
        self._proto: _HttpProtocol | None = None
        self._opening: asyncio.Task[None] | None = None
        self._deadline = math.inf
        self._fresh = False  # the request went out on a connection opened for it

    @property
    def busy(self) -> bool:
        """A request is in progress: a connection is being opened for it, or it is out unanswered."""
        return self._opening is not None or (self._proto is not None and self._proto.waiting)

    def send(self, deadline: float) -> None:
        """Send the request (none may be in progress), to be settled by `deadline` (time.monotonic())."""
        self._deadline = deadline
        proto = self._proto
        if proto is not None and proto.reusable:
            self._fresh = False
            proto.request()
        else:
            self._reopen()

    def expire(self, now: float) -> None:
        """Fail the request in progress as TIMEOUT if its deadline is past `now`."""
        if now >= self._deadline and self.busy:
            self._discard()  # a late response must not be taken for the next request's
            self._settle_failed(TIMEOUT)

    def close(self) -> asyncio.Task[None] | None:
        """Close the connection; a connect in progress is cancelled and returned, to be awaited."""
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()
        if self._proto is not None:
            self._proto.close()
            self._proto = None
        return opening

    def _discard(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        if self._proto is not None:
            self._proto.abort()
            self._proto = None

    def _settle_failed(self, kind: str) -> None:
        self._owner.failed(kind)

    # from _HttpProtocol

    def _failed(self, proto: _HttpProtocol, kind: str) -> None:
        if kind == RESET and not (self._fresh or proto.got_bytes):
            # The server closed this idle connection just as it was reused, before
            # answering anything: send once more on a fresh connection.
            self._reopen()
            return
        self._settle_failed(kind)

    def _reopen(self) -> None:
        self._fresh = True
        self._opening = self._loop.create_task(self._open())

    async def _open(self) -> None:
        # Closing only now lets a server that said `Connection: close` close first,
        # which leaves TIME_WAIT on its side rather than eating our ephemeral ports.
        if self._proto is not None:
            self._proto.close()
            self._proto = None
        target = self._target
        kind = None
        try:
            async with asyncio.timeout(self._deadline - time.monotonic()):
                _, proto = await self._loop.create_connection(
                    lambda: _HttpProtocol(self, self._owner, self._payload, self._batch),
                    host=target.address,
                    port=target.port,
                    family=target.family,
                    ssl=target.ssl_context,
                    server_hostname=target.server_hostname,
                )
        except TimeoutError:  # before OSError, of which it is a subclass
            kind = TIMEOUT
        except OSError:  # refused, unreachable, TLS handshake (ssl.SSLError is an OSError)
            kind = CONNECT
        self._opening = None
        if kind is not None:
            self._settle_failed(kind)
            return
        self._proto = proto
        proto.request()
