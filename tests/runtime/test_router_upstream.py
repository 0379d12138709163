"""The router against replicas that misbehave on the wire: real sockets, stand-in scoring servers.

A replica killed between writing its answer's headers and its body leaves the router half an
answer; the caller must still get a whole one, from another replica. An answer that is not HTTP
is a 502 with a JSON body, not retried.
"""

from __future__ import annotations

import asyncio
import json
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from pathlib import Path

from deployflow.platform.specs import DeploymentSpec, ModelRef, RequestSettings
from deployflow.runtime.serving.endpoints import DeploymentRuntime
from deployflow.runtime.serving.metrics import BUCKETS_S, TrafficSeries
from deployflow.runtime.serving.replicas import Replica, ReplicaState
from deployflow.runtime.serving.router import Request, Router
from deployflow.runtime.serving.upstream import SPARE_IDLE_S

GOOD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n[151.0]"
HEADERS_ONLY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n"
NOT_HTTP = b"\x00\x01 not an http answer\r\n\r\n"


class StandIn:
    """A scoring server on a loopback port that answers every connection with ``reply`` and closes."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> StandIn:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(self.reply)
        await writer.drain()
        writer.close()


def deployment_of(tmp_path: Path, *servers: StandIn, timeout_ms: int = 5000) -> DeploymentRuntime:
    spec = DeploymentSpec(
        endpoint="ep-router", name="blue", model=ModelRef("m", "1"), instance_count=len(servers),
        request_settings=RequestSettings(request_timeout_ms=timeout_ms),
    )  # fmt: skip
    deployment = DeploymentRuntime("ep-router", "blue", spec, enforcement="none")
    for index, server in enumerate(servers):
        replica = Replica(f"ep-router.blue.{index}", python=Path("python"), package_dir=tmp_path, worker_count=1,
                          environment={}, placement_factory=lambda: None,  # type: ignore[arg-type,return-value]
                          log_path=tmp_path / f"{index}.log")  # fmt: skip
        replica.port, replica.state = server.port, ReplicaState.READY
        deployment.replicas.append(replica)
    return deployment


def score(router: Router, deployment: DeploymentRuntime) -> Awaitable:
    request = Request(b"POST", b"/endpoints/ep-router/score", {b"content-type": b"application/json"}, b"{}", True)
    return router.forward(deployment, request, b"req-1")


def run(scenario: Callable[[Router], Awaitable[object]]) -> object:
    return asyncio.run(scenario(Router(runtime=None, max_body_bytes=1 << 20)))  # type: ignore[arg-type]


def test_half_an_answer_from_a_dying_replica_is_answered_by_another(tmp_path: Path) -> None:
    async def scenario(router: Router) -> tuple[list[int], int, ReplicaState, bytes]:
        async with StandIn(HEADERS_ONLY) as dying, StandIn(GOOD) as healthy:
            deployment = deployment_of(tmp_path, dying, healthy)
            answers = [await score(router, deployment) for _ in range(4)]  # the replicas take turns
            return [a.status for a in answers], dying.connections, deployment.replicas[0].state, answers[0].body

    statuses, dying_connections, dying_state, body = run(scenario)  # type: ignore[misc]

    assert statuses == [200, 200, 200, 200]
    assert body == b"[151.0]"
    assert dying_connections == 1 and dying_state is ReplicaState.DEAD  # asked once, then left out


def test_an_answer_that_is_not_http_is_a_502_with_a_json_body_and_not_retried(tmp_path: Path) -> None:
    async def scenario(router: Router) -> tuple[int, bytes, int]:
        async with StandIn(NOT_HTTP) as broken:
            answer = await score(router, deployment_of(tmp_path, broken))
            return answer.status, answer.body, broken.connections

    status, body, connections = run(scenario)  # type: ignore[misc]

    assert status == 502 and connections == 1
    assert "broken answer" in json.loads(body)["error"]["message"]


def test_a_request_that_two_replicas_die_holding_is_not_sent_to_a_third(tmp_path: Path) -> None:
    async def scenario(router: Router) -> tuple[int, bytes, int, list[ReplicaState]]:
        async with StandIn(HEADERS_ONLY) as a, StandIn(b"") as b, StandIn(HEADERS_ONLY) as c:
            deployment = deployment_of(tmp_path, a, b, c)
            answer = await score(router, deployment)
            states = [r.state for r in deployment.replicas]
            return answer.status, answer.body, a.connections + b.connections + c.connections, states

    status, body, connections, states = run(scenario)  # type: ignore[misc]

    assert status == 502 and connections == 2
    assert "went away while holding this request" in json.loads(body)["error"]["message"]
    assert states.count(ReplicaState.READY) == 1  # one replica was never sent it, and still serves


class Silent(StandIn):
    """Reads the request and never answers: the deployment's request timeout decides."""

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.read()  # until the router gives up and closes


def test_timeouts_and_refused_connections_are_counted_for_the_live_metrics(tmp_path: Path) -> None:
    async def scenario(router: Router) -> tuple[int, int, TrafficSeries, TrafficSeries]:
        async with Silent(b"") as silent:
            late = deployment_of(tmp_path, silent, timeout_ms=200)
            gone = deployment_of(tmp_path, silent, timeout_ms=200)
            timed_out = (await score(router, late)).status
        # the server has closed: its port refuses
        refused = (await score(router, gone)).status
        return timed_out, refused, late.metrics.live, gone.metrics.live

    timed_out, refused, late, gone = run(scenario)  # type: ignore[misc]

    assert (timed_out, late.timeouts, late.no_answer, late.by_class[5]) == (504, 1, 0, 1)
    assert sum(late.buckets[: bisect_left(BUCKETS_S, 0.2)]) == 0, "the timed-out request took its 200 ms"
    assert (refused, gone.timeouts, gone.no_answer, gone.by_class[5]) == (503, 0, 1, 1)


class Counting(StandIn):
    """Answers each request; remembers, per connection, whether a request came on it, and when one closed unused."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply)
        self.used: list[bool] = []
        self.closed_unused = asyncio.Event()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        index = len(self.used)
        self.used.append(False)
        try:
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed_unused.set()
            return
        self.used[index] = True
        writer.write(self.reply)
        await writer.drain()
        writer.close()


def test_each_answer_leaves_a_spare_connection_that_the_next_request_takes_and_an_unused_one_is_closed(
    tmp_path: Path,
) -> None:
    """The spare saves the connect; closed soon when unused, it cannot hold a sync worker from a health probe."""

    async def scenario(router: Router) -> tuple[list[int], float, list[bool]]:
        async with Counting(GOOD) as replica:
            deployment = deployment_of(tmp_path, replica)
            statuses = [(await score(router, deployment)).status for _ in range(5)]
            loop = asyncio.get_running_loop()
            last_answer = loop.time()
            await asyncio.wait_for(replica.closed_unused.wait(), SPARE_IDLE_S + 2)
            return statuses, loop.time() - last_answer, list(replica.used)

    statuses, idle, used = run(scenario)  # type: ignore[misc]

    assert statuses == [200] * 5
    assert used == [True] * 5 + [False]  # 5 requests on 6 connections: each but the first found one ready
    assert SPARE_IDLE_S - 0.1 < idle < SPARE_IDLE_S + 0.5


class OneAtATime(Counting):
    """Serves one connection at a time, in the order they came, as gunicorn's sync worker does: a connection
    it has taken holds it until a request arrives on it or it closes."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply)
        self.worker = asyncio.Lock()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self.worker:
            await super()._answer(reader, writer)


def test_a_request_right_after_an_answer_takes_the_spare_still_connecting_not_a_connection_behind_it(
    tmp_path: Path,
) -> None:
    """A connection opened past the spare would wait behind it at a one-worker replica until the spare expired."""

    async def scenario(router: Router) -> tuple[list[int], list[bool]]:
        async with OneAtATime(GOOD) as replica:
            deployment = deployment_of(tmp_path, replica)
            statuses = [(await asyncio.wait_for(score(router, deployment), SPARE_IDLE_S / 2)).status for _ in range(20)]
            await asyncio.wait_for(replica.closed_unused.wait(), SPARE_IDLE_S + 2)
            return statuses, list(replica.used)

    statuses, used = run(scenario)  # type: ignore[misc]

    assert statuses == [200] * 20
    assert used == [True] * 20 + [False]


class OnUnixSocket(StandIn):
    """The stand-in on a Unix socket only, as a replica the router should reach by its socket."""

    def __init__(self, reply: bytes, path: Path) -> None:
        super().__init__(reply)
        self.path = path

    async def __aenter__(self) -> OnUnixSocket:
        self.server = await asyncio.start_unix_server(self._answer, str(self.path))
        return self


def test_a_replica_with_a_unix_socket_is_reached_by_it(tmp_path: Path) -> None:
    async def scenario(router: Router) -> tuple[list[int], int]:
        async with OnUnixSocket(GOOD, tmp_path / "r.sock") as replica, StandIn(b"") as wrong_port:
            deployment = deployment_of(tmp_path, wrong_port)  # its port answers nothing useful
            deployment.replicas[0].socket_path = str(replica.path)
            statuses = [(await score(router, deployment)).status for _ in range(3)]
            return statuses, wrong_port.connections

    statuses, port_connections = run(scenario)  # type: ignore[misc]

    assert statuses == [200] * 3
    assert port_connections == 0
