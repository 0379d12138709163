"""The router's side of a replica's connections: one request per connection, spares kept ready.

azmlinfsrv runs gunicorn's sync worker, which answers every request with ``Connection: close``
(it has no keep-alive), so each request needs a new connection (to the replica's Unix socket when it
listens on one, else to its loopback port). Opening it costs the router
a connect and an event-loop turn on the request's critical path. After each answer from a replica
the router opens the next connection to it at once (right after the caller has that answer), so the
next request finds it ready: up to one spare per sync worker (``MAX_SPARES`` at most).

A spare left unused holds a sync worker that waits to read it, and anything else the worker
should serve (the liveness probe, a stop) queues behind it: a spare is closed after
``SPARE_IDLE_S`` unused (by one sweep, not a timer per spare).
"""

from __future__ import annotations

import asyncio
from collections import deque

import httptools

from deployflow.platform import contract
from deployflow.runtime.serving.replicas import Replica, ReplicaState

SPARE_IDLE_S = 0.5
MAX_SPARES = 2
DEPLOYMENT_HEADER = contract.DEPLOYMENT_HEADER.encode()
REQUEST_ID_HEADER = b"x-request-id"
RESPONSE_DROPPED = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length",
                              REQUEST_ID_HEADER, DEPLOYMENT_HEADER})  # fmt: skip


class NoAnswer(Exception):
    """The replica refused or closed the connection before its answer was complete: it went away
    (killed, crashed, stopped), often between writing the headers and the body. The caller has
    seen nothing yet and a scoring call's answer depends on its input alone, so another replica
    is asked. ``sent`` tells a replica that took the request from one that refused the connection."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class BrokenAnswer(Exception):
    """The replica answered with something that is not HTTP: not retried, the caller gets a 502."""


class Answer:
    """An answer for the caller; ``failure`` says when the router made it because the deployment gave none."""

    __slots__ = ("status", "headers", "body", "failure")

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, failure: str | None = None
    ) -> None:
        self.status, self.headers, self.body, self.failure = status, headers, body, failure


class UpstreamConnection(asyncio.Protocol):
    """One connection to a replica, for one request; ``done`` resolves with the parsed answer."""

    def __init__(self, done: asyncio.Future[Answer]) -> None:
        self.done = done
        self.connected_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.sent = False
        self.closed = False
        self.received = False
        self.headers_complete = False
        self.length_known = False

    def usable(self) -> bool:
        """Connected and not closed by the replica: a request may be sent on it."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def send(self, payload: bytes) -> asyncio.Future[Answer]:
        self.sent = True
        self.transport.write(payload)  # type: ignore[union-attr]
        return self.done

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def time_out(self) -> None:
        """The request's deadline passed: the one awaiting the answer gets a TimeoutError."""
        if not self.done.done():
            self.done.set_exception(TimeoutError())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # TCP_NODELAY is already set: asyncio and uvloop both set it on every TCP transport.
        self.transport = transport  # type: ignore[assignment]
        self.connected_at = self.done.get_loop().time()

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.parser is None:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(BrokenAnswer(f"unparseable answer: {e}"))

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in RESPONSE_DROPPED:
            if name == b"content-length" or name == b"transfer-encoding":
                self.length_known = True
            return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_complete = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.done.done():
            self.done.set_result(self._answer())

    def _answer(self) -> Answer:
        body = self.body
        return Answer(self.parser.get_status_code(), self.headers, body[0] if len(body) == 1 else b"".join(body))

    def _fail(self, error: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done.done() or not self.sent:  # answered, or an unused spare closed: nobody waits on it
            pass
        elif not self.received:
            self._fail(NoAnswer(str(exc) if exc else "connection closed before any answer", sent=True))
        elif self.headers_complete and not self.length_known:
            self.done.set_result(self._answer())  # a body delimited by the close itself
        else:
            self._fail(NoAnswer("connection closed mid-answer", sent=True))
        # The parser holds this protocol: without the cycle, reference counting frees both now, and the
        # cyclic collector is not run every few dozen requests to find them.
        self.parser = None  # type: ignore[assignment]


class Upstreams:
    """Sends requests to replicas, each on a fresh connection, taking the replica's oldest spare when it has one.

    A replica's spares are kept as the tasks that open them, in the order they were opened. A request
    takes the oldest, waiting for it if it is still connecting: a sync worker takes connections in
    the order they came, so one opened past a spare would queue behind it, and the spare would hold
    the worker until it expired."""

    def __init__(self) -> None:
        self._spares: dict[Replica, deque[asyncio.Task[UpstreamConnection | None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    async def exchange(self, replica: Replica, payload: bytes, deadline: float) -> Answer:
        """The replica's answer; TimeoutError when it has not come by ``deadline`` (loop time)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        upstream = None
        spares = self._spares.get(replica)
        while spares and upstream is None:
            spare = spares.popleft()
            if spare.done():
                upstream = spare.result()
            else:  # opened after the previous answer and still connecting: only slow when the replica is
                async with asyncio.timeout_at(deadline):
                    upstream = await spare
            if upstream is not None and not upstream.usable():
                upstream = None
        if upstream is None:
            async with asyncio.timeout_at(deadline):
                upstream = await connect(loop, replica)
        timer = loop.call_at(deadline, upstream.time_out)
        try:
            answer = await upstream.send(payload)
        finally:
            timer.cancel()
            upstream.close()
        # Opened on the next turn of the loop: after the caller has its answer, before its next request.
        self._open_spare(loop, replica)
        return answer

    def _open_spare(self, loop: asyncio.AbstractEventLoop, replica: Replica) -> None:
        spares = self._spares.get(replica)
        if spares is None:
            spares = self._spares[replica] = deque()
        if (
            len(spares) >= min(MAX_SPARES, replica.worker_count)
            or replica.state is not ReplicaState.READY
            or self._closed
        ):
            return
        spares.append(loop.create_task(self._spare(loop, replica)))
        if self._sweeper is None:
            self._sweeper = loop.call_later(SPARE_IDLE_S / 4, self._sweep)

    async def _spare(self, loop: asyncio.AbstractEventLoop, replica: Replica) -> UpstreamConnection | None:
        try:
            upstream = await open_connection(loop, replica)
        except OSError:
            return None  # the replica went away; the request that takes this connects itself, and fails over
        if self._closed:
            upstream.close()
        return upstream

    def _sweep(self) -> None:
        """Close spares unused for ``SPARE_IDLE_S`` (or closed by the replica); runs while any spare is kept."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for replica, spares in list(self._spares.items()):
            while spares and spares[0].done():
                upstream = spares[0].result()
                if upstream is not None and upstream.usable() and now - upstream.connected_at < SPARE_IDLE_S:
                    break
                spares.popleft()
                if upstream is not None:
                    upstream.close()
            if not spares:
                del self._spares[replica]
        self._sweeper = loop.call_later(SPARE_IDLE_S / 4, self._sweep) if self._spares else None

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for spares in self._spares.values():
            for spare in spares:
                if spare.done() and (upstream := spare.result()) is not None:
                    upstream.close()
        self._spares.clear()


async def open_connection(loop: asyncio.AbstractEventLoop, replica: Replica) -> UpstreamConnection:
    """A connection to the replica's Unix socket when it listens on one, else to its loopback port."""
    if replica.socket_path is not None:
        _, upstream = await loop.create_unix_connection(
            lambda: UpstreamConnection(loop.create_future()), replica.socket_path
        )
    else:
        _, upstream = await loop.create_connection(
            lambda: UpstreamConnection(loop.create_future()), replica.host, replica.port
        )
    return upstream


async def connect(loop: asyncio.AbstractEventLoop, replica: Replica) -> UpstreamConnection:
    try:
        return await open_connection(loop, replica)
    except OSError as e:
        raise NoAnswer(str(e), sent=False) from e
