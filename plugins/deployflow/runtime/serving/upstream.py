"""The router's side of a replica's connections: one request per connection, one kept spare.

azmlinfsrv runs gunicorn's sync worker, which answers every request with ``Connection: close``
(it has no keep-alive), so each request needs a new TCP connection. Opening it costs the router
a connect and an event-loop turn on the request's critical path. After each answer the router
opens the next connection to that replica at once, so the next request finds it ready.

A spare left unused holds a sync worker that waits to read it, and anything else the worker
should serve (the liveness probe, a stop) queues behind it: a spare is closed after
``SPARE_IDLE_S`` unused.
"""

from __future__ import annotations

import asyncio
import socket

import httptools

from deployflow.platform import contract
from deployflow.runtime.serving.replicas import Replica, ReplicaState

SPARE_IDLE_S = 0.5
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
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.sent = False
        self.closed = False
        self.received = False
        self.headers_complete = False
        self.length_known = False
        self.idle_timer: asyncio.TimerHandle | None = None

    def send(self, payload: bytes) -> asyncio.Future[Answer]:
        self.sent = True
        self.transport.write(payload)  # type: ignore[union-attr]
        return self.done

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        no_delay(transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(BrokenAnswer(f"unparseable answer: {e}"))

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in (b"content-length", b"transfer-encoding"):
            self.length_known = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_complete = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.done.done():
            self.done.set_result(self._answer())

    def _answer(self) -> Answer:
        headers = [(n, v) for n, v in self.headers if n not in RESPONSE_DROPPED]
        return Answer(self.parser.get_status_code(), headers, b"".join(self.body))

    def _fail(self, error: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done.done() or not self.sent:  # an unused spare closed: nobody waits on it
            return
        if not self.received:
            self._fail(NoAnswer(str(exc) if exc else "connection closed before any answer", sent=True))
        elif self.headers_complete and not self.length_known:
            self.done.set_result(self._answer())  # a body delimited by the close itself
        else:
            self._fail(NoAnswer("connection closed mid-answer", sent=True))


async def connect(replica: Replica) -> UpstreamConnection:
    loop = asyncio.get_running_loop()
    try:
        _, upstream = await loop.create_connection(
            lambda: UpstreamConnection(loop.create_future()), replica.host, replica.port
        )
    except OSError as e:
        raise NoAnswer(str(e), sent=False) from e
    return upstream


class Upstreams:
    """Sends requests to replicas, each on a fresh connection, taking the replica's spare when it has one."""

    def __init__(self) -> None:
        self._spares: dict[Replica, asyncio.Task[UpstreamConnection]] = {}

    async def exchange(self, replica: Replica, payload: bytes) -> Answer:
        upstream = await self._take_spare(replica) or await connect(replica)
        try:
            answer = await upstream.send(payload)
        finally:
            upstream.close()
        self._open_spare(replica)
        return answer

    async def _take_spare(self, replica: Replica) -> UpstreamConnection | None:
        task = self._spares.pop(replica, None)
        if task is None:
            return None
        try:
            upstream = await task  # opened during the previous answer: almost always done already
        except NoAnswer:
            return None
        if upstream.idle_timer is not None:
            upstream.idle_timer.cancel()
        return None if upstream.closed else upstream

    def _open_spare(self, replica: Replica) -> None:
        if replica in self._spares or replica.state is not ReplicaState.READY:
            return
        task = asyncio.get_running_loop().create_task(connect(replica))
        self._spares[replica] = task
        task.add_done_callback(lambda t: self._spare_opened(replica, t))

    def _spare_opened(self, replica: Replica, task: asyncio.Task[UpstreamConnection]) -> None:
        if task.cancelled() or task.exception() is not None:
            if self._spares.get(replica) is task:
                del self._spares[replica]
            return
        upstream = task.result()
        upstream.idle_timer = asyncio.get_running_loop().call_later(SPARE_IDLE_S, self._expire, replica, task)

    def _expire(self, replica: Replica, task: asyncio.Task[UpstreamConnection]) -> None:
        if self._spares.get(replica) is task:
            del self._spares[replica]
            task.result().close()

    def close(self) -> None:
        for task in self._spares.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().close()
            else:
                task.cancel()
        self._spares.clear()


def no_delay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
