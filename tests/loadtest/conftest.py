"""Real HTTP servers on loopback for the load generator's tests, started and stopped per test."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

RESPONSE_BODY = b'{"result": [1, 2, 3]}'
T = TypeVar("T")


@dataclass(frozen=True)
class Behaviour:
    """How the stub server answers.

    serial: one request at a time (a single worker), so capacity is 1 / service_time_s.
    framing: "length" (Content-Length), "chunked", or "close" (body ends when the
    connection closes). connection_close: say `Connection: close` like azmlinfsrv does;
    silent_close: close after answering without saying so.
    action: "respond", "hang" (never answer), "drop" (close without answering),
    "garbage" (answer with something that is not HTTP).
    """

    service_time_s: float = 0.0
    serial: bool = False
    status: int = 200
    exec_ms_header: bool = False
    framing: str = "length"
    connection_close: bool = False
    silent_close: bool = False
    action: str = "respond"


class StubServer:
    """An asyncio HTTP/1.1 server on 127.0.0.1, on a free port, in its own thread."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests = 0
        self.connections = 0
        self.last_head = b""
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stub-http", daemon=True)
        self._server: asyncio.Server | None = None
        self._lock: asyncio.Lock | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/score"

    def start(self) -> StubServer:
        self._thread.start()
        self._server = self._call(self._listen())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> asyncio.Server:
        self._lock = asyncio.Lock()
        return await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # client went away, or the server is stopping
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is to be closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        self.requests += 1
        self.last_head = head
        b = self.behaviour
        if b.action == "drop":
            return False
        if b.action == "hang":
            await asyncio.sleep(3600)
        if b.action == "garbage":
            writer.write(b"THIS IS NOT HTTP\r\n\r\n")
            await writer.drain()
            return False
        elapsed_ms = await self._work()
        headers = [f"HTTP/1.1 {b.status} X", "Content-Type: application/json"]
        if b.exec_ms_header:
            headers.append(f"x-ms-run-fn-exec-ms: {elapsed_ms:.3f}")
        if b.framing == "length":
            headers.append(f"Content-Length: {len(RESPONSE_BODY)}")
            body = RESPONSE_BODY
        elif b.framing == "chunked":
            headers.append("Transfer-Encoding: chunked")
            half = len(RESPONSE_BODY) // 2
            chunks = (RESPONSE_BODY[:half], RESPONSE_BODY[half:])
            body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        else:
            body = RESPONSE_BODY
        close = b.connection_close or b.framing == "close"
        if close:
            headers.append("Connection: close")
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return not (close or b.silent_close)

    async def _work(self) -> float:
        """The request's service time, under the lock when the server is serial."""
        assert self._lock is not None
        if not self.behaviour.serial:
            return await self._sleep()
        async with self._lock:
            return await self._sleep()

    async def _sleep(self) -> float:
        started = time.perf_counter()
        if self.behaviour.service_time_s:
            await asyncio.sleep(self.behaviour.service_time_s)
        return (time.perf_counter() - started) * 1e3


@pytest.fixture
def stub_server() -> Iterator[Callable[..., StubServer]]:
    """Start stub servers with a given Behaviour's fields; all are stopped after the test."""
    servers: list[StubServer] = []

    def start(**behaviour: object) -> StubServer:
        server = StubServer(Behaviour(**behaviour)).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL on which nothing listens: the port was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/score"
