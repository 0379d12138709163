"""The data plane: one port that authenticates, splits, mirrors and forwards scoring requests.

``POST /endpoints/{name}/score`` with ``Authorization: Bearer <key>`` is sent to a
deployment drawn by the endpoint's traffic weights, or to the one named in the
``azureml-model-deployment`` header; a share may be copied to the mirror deployment, whose
answers are dropped. A replica that fails before answering is replaced by another, so a
replica's death or a traffic change never fails a request. Each answer a deployment gives
is counted for the live metrics (see ``metrics``) unless the runtime runs with ``--no-metrics``.
A client connection is held to ``RouterLimits``: header size and count, URL length, an idle and a
read timeout (checked by one sweep a second, not a timer per request), and a connection count; a
JSON body nested deeper than ``max_json_depth`` is refused before it reaches a replica (``nesting``).
Written on asyncio protocols with httptools because every microsecond here is added to every
prediction.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import uuid
from collections import deque
from http import HTTPStatus
from time import monotonic, perf_counter
from typing import TYPE_CHECKING

import httptools

from deployflow.compare import compare_responses
from deployflow.runtime.config import MAX_HEADER_FIELD_BYTES, RouterLimits
from deployflow.runtime.serving.endpoints import DeploymentRuntime
from deployflow.runtime.serving.metrics import NO_ANSWER, PROBE_HEADER, TIMEOUT
from deployflow.runtime.serving.nesting import depth_past, is_json_media_type
from deployflow.runtime.serving.replicas import Replica
from deployflow.runtime.serving.upstream import (
    DEPLOYMENT_HEADER,
    REQUEST_ID_HEADER,
    Answer,
    BrokenAnswer,
    NoAnswer,
    Upstreams,
)

if TYPE_CHECKING:
    from deployflow.runtime.control.service import Runtime

log = logging.getLogger(__name__)

SCORE_PATH = re.compile(rb"^/endpoints/([^/?]+)/score(?:\?.*)?$")
# Not forwarded: they describe one connection, or they are the caller's secret.
HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
        b"upgrade", b"host", b"content-length", b"authorization", REQUEST_ID_HEADER,
    }
)  # fmt: skip
MAX_ATTEMPTS = 8
# Replicas that may go away while holding one request before it is answered with a 502: a request
# that takes down every replica it reaches (a "query of death") must not take down the deployment.
MAX_LOST_PER_REQUEST = 2
MAX_MIRRORS_IN_FLIGHT = 64
# Shadow answers agree when numbers are within 1 % (a retrained model moves them a little) and all else is equal.
SHADOW_REL_TOL, SHADOW_ABS_TOL = 0.01, 1e-6
REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
# Bytes of a request head beyond its target and header fields: method, version, separators.
HEAD_SLACK_BYTES = 1024
DEFAULT_LIMITS = RouterLimits()
# Requests read ahead of the one being answered on a connection (pipelined) before reading pauses.
MAX_PIPELINED = 8


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_answer(status: int, code: str, message: str, failure: str | None = None) -> Answer:
    return Answer(status, [(b"content-type", b"application/json")], error_body(code, message), failure)


class RequestIds:
    """Request ids for requests that bring none: UUID-shaped, a random prefix per process and a counter after
    it, so unique without drawing 16 random bytes (a syscall) and building a UUID object per request."""

    def __init__(self) -> None:
        random = uuid.uuid4().hex
        self._prefix = f"{random[:8]}-{random[8:12]}-{random[12:16]}-{random[16:20]}-".encode()
        self._count = itertools.count(int(random[20:], 16) & 0xFFFFFFFF)

    def next(self) -> bytes:
        return b"%s%012x" % (self._prefix, next(self._count) & 0xFFFFFFFFFFFF)


class Request:
    __slots__ = ("method", "url", "headers", "body", "keep_alive")

    def __init__(self, method: bytes, url: bytes, headers: dict[bytes, bytes], body: bytes, keep_alive: bool):
        self.method, self.url, self.headers, self.body, self.keep_alive = (
            method,
            url,
            headers,
            body,
            keep_alive,
        )


class Router:
    """Routes scoring requests to the runtime's deployments."""

    def __init__(
        self, runtime: Runtime, max_body_bytes: int, *, metrics: bool = True, limits: RouterLimits = DEFAULT_LIMITS
    ) -> None:
        self.runtime = runtime
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.limits = limits
        # what a request head may be in all, before httptools has handed over its fields
        self.max_head_bytes = limits.max_url_bytes + limits.max_header_bytes + HEAD_SLACK_BYTES
        self.server: asyncio.Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the running loop, once started
        self.upstreams = Upstreams()
        self.request_ids = RequestIds()
        self.connections: set[ClientConnection] = set()
        self._mirrors: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: ClientConnection(self), host, port, backlog=2048)
        self._sweep()

    def _sweep(self) -> None:
        """Close connections past their idle or read timeout; runs every second (sooner for short timeouts)."""
        now = monotonic()
        for connection in list(self.connections):
            connection.check_timeouts(now)
        tick = min(1.0, self.limits.idle_timeout_s / 4, self.limits.read_timeout_s / 4)
        self._sweeper = self.loop.call_later(tick, self._sweep)  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.server is not None:
            self.server.close()
        for task in list(self._mirrors):
            task.cancel()
        self.upstreams.close()

    async def dispatch(self, request: Request) -> tuple[Answer, bytes]:
        """The answer to one request, and the request id it carries."""
        request_id = request.headers.get(REQUEST_ID_HEADER) or self.request_ids.next()
        match = SCORE_PATH.match(request.url)
        if match is None:
            path = request.url.decode(errors="replace")
            return error_answer(404, "NotFound", f"no route {path}; score at POST /endpoints/<name>/score"), request_id
        if request.method != b"POST":
            return error_answer(405, "MethodNotAllowed", "scoring takes POST"), request_id
        name = match.group(1).decode(errors="replace")
        endpoint = self.runtime.endpoints.get(name)
        if endpoint is None:
            return error_answer(404, "EndpointNotFound", f"no endpoint named {name}"), request_id
        if not endpoint.authorized(request.headers.get(b"authorization")):
            message = "send one of the endpoint's keys as 'Authorization: Bearer <key>'"
            return error_answer(401, "Unauthorized", message), request_id
        if is_json_media_type(request.headers.get(b"content-type")):
            depth = depth_past(request.body, self.limits.max_json_depth)
            if depth is not None:
                message = (f"the JSON body nests {depth} levels deep; the router takes at most "
                           f"{self.limits.max_json_depth} (--max-json-depth): send flatter data")  # fmt: skip
                return error_answer(400, "JsonTooDeep", message), request_id
        pinned = request.headers.get(DEPLOYMENT_HEADER)
        if pinned:
            deployment = endpoint.deployments.get(pinned.decode(errors="replace"))
            if deployment is None or not deployment.routable():
                message = f"endpoint {name} has no deployment named {pinned.decode(errors='replace')} to serve"
                return error_answer(404, "DeploymentNotFound", message), request_id
        else:
            deployment = endpoint.choose()
            if deployment is None:
                message = f"endpoint {name} has no deployment taking traffic; set its traffic"
                return error_answer(503, "NoTrafficDeployment", message), request_id
            mirror = endpoint.mirror_target()
            if mirror is not None and len(self._mirrors) < MAX_MIRRORS_IN_FLIGHT:
                task = asyncio.create_task(self._mirror(mirror, request, request_id))
                self._mirrors.add(task)
                task.add_done_callback(self._mirrors.discard)
                answer = await self.forward(deployment, request, request_id)
                if self.metrics:
                    task.add_done_callback(lambda done: _compare_shadow(mirror, answer, done, request_id))
                answer.headers.append((DEPLOYMENT_HEADER, deployment.name_bytes))
                return answer, request_id
        answer = await self.forward(deployment, request, request_id)
        answer.headers.append((DEPLOYMENT_HEADER, deployment.name_bytes))
        return answer, request_id

    async def _mirror(self, deployment: DeploymentRuntime, request: Request, request_id: bytes) -> Answer:
        return await self.forward(deployment, request, request_id, mirrored=True)

    async def forward(
        self, deployment: DeploymentRuntime, request: Request, request_id: bytes, *, mirrored: bool = False
    ) -> Answer:
        """Send to a ready replica and count the answer against the deployment."""
        if not self.metrics:
            answer = await self._forward(deployment, request, request_id)
            deployment.stats.record(answer.status, mirrored=mirrored)
            return answer
        started = perf_counter()
        answer = await self._forward(deployment, request, request_id)
        deployment.stats.record(answer.status, mirrored=mirrored)
        metrics = deployment.metrics
        series = metrics.mirror if mirrored else metrics.probe if PROBE_HEADER in request.headers else metrics.live
        series.record(answer.status, perf_counter() - started, answer.failure)
        return answer

    async def _forward(self, deployment: DeploymentRuntime, request: Request, request_id: bytes) -> Answer:
        """When a replica goes away before its answer is complete, try another until the request's timeout."""
        loop = self.loop or asyncio.get_running_loop()
        deadline = loop.time() + deployment.timeout_s
        payload = upstream_request(request, request_id)
        tried: set[Replica] = set()
        lost = 0
        for _ in range(MAX_ATTEMPTS):
            replica = deployment.pick(tried)
            if replica is None:
                replica = await self._wait_for_replica(deployment, deadline)
                if replica is None:
                    return error_answer(
                        503, "NoReadyInstance", f"deployment {deployment.name} has no instance ready to serve",
                        NO_ANSWER,
                    )  # fmt: skip
                tried.clear()
            tried.add(replica)
            replica.inflight += 1
            try:
                return await self.upstreams.exchange(replica, payload, deadline)
            except NoAnswer as e:
                replica.mark_dead()
                lost += e.sent
                if lost >= MAX_LOST_PER_REQUEST:
                    return error_answer(
                        502, "BadGateway",
                        f"{lost} instances of deployment {deployment.name} went away while holding this request "
                        "(it may be what stops them); it is not sent to another", NO_ANSWER,
                    )  # fmt: skip
                continue
            except BrokenAnswer as e:
                message = f"deployment {deployment.name} gave a broken answer: {e}"
                return error_answer(502, "BadGateway", message, NO_ANSWER)
            except TimeoutError:
                return error_answer(
                    504, "RequestTimeout",
                    f"deployment {deployment.name} did not answer within {deployment.timeout_s:g}s "
                    "(request_settings.request_timeout_ms)", TIMEOUT,
                )  # fmt: skip
            finally:
                replica.inflight -= 1
        return error_answer(502, "BadGateway", f"no instance of deployment {deployment.name} answered", NO_ANSWER)

    async def _wait_for_replica(self, deployment: DeploymentRuntime, deadline: float) -> Replica | None:
        loop = asyncio.get_running_loop()
        while True:
            deployment.replica_ready.clear()
            replica = deployment.pick(set())
            remaining = deadline - loop.time()
            if replica is not None or remaining <= 0 or not deployment.routable():
                return replica
            try:
                await asyncio.wait_for(deployment.replica_ready.wait(), remaining)
            except TimeoutError:
                return None


def _compare_shadow(mirror: DeploymentRuntime, live: Answer, done: asyncio.Task[Answer], request_id: bytes) -> None:
    """Count whether the mirrored deployment answered what the live one did (numbers within 1 %, labels
    and structure equal). Only requests the live deployment answered 2xx are a reference."""
    if done.cancelled() or done.exception() is not None or not 200 <= live.status < 300:
        return
    shadow = done.result()
    problems = [f"HTTP {shadow.status}"] if not 200 <= shadow.status < 300 else None
    if problems is None:
        try:
            problems = compare_responses(json.loads(live.body), json.loads(shadow.body),
                                         rel_tol=SHADOW_REL_TOL, abs_tol=SHADOW_ABS_TOL)  # fmt: skip
        except ValueError:
            problems = [] if live.body == shadow.body else ["the answers are not JSON and differ"]
    mirror.metrics.shadow.record(request_id.decode(errors="replace"), problems)


def upstream_request(request: Request, request_id: bytes) -> bytes:
    lines = [b"POST /score HTTP/1.1", b"host: 127.0.0.1", b"connection: close",
             b"content-length: " + str(len(request.body)).encode(),
             b"x-request-id: " + request_id]  # fmt: skip
    for name, value in request.headers.items():
        if name not in HOP_BY_HOP:
            lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + request.body


class ClientConnection(asyncio.Protocol):
    """A caller's keep-alive connection; requests on it are answered in order."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.limits = router.limits
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: deque[Request] = deque()
        self.busy = False
        # When the request being read began (None between requests), when the connection last fell idle,
        # and the bytes of a head httptools is still gathering: what the sweep and the head cap look at.
        self.request_started: float | None = None
        self.idle_since = monotonic()
        self.head_bytes = 0
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.header_count = 0
        self.header_bytes = 0
        self.headers_done = False
        self.body: list[bytes] = []
        self.body_size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.router.connections) >= self.limits.max_connections:
            message = f"the router has {self.limits.max_connections} connections open (--max-connections); retry later"
            self._reject(503, "TooManyConnections", message)
            return
        self.router.connections.add(self)  # TCP_NODELAY: asyncio and uvloop set it on every TCP transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.router.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if not self.headers_done:  # bytes of a head (a read that ends one body and begins a head is not counted)
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, _Refused):
                self._reject(*e.__context__.args)
            else:
                self._reject(400, "BadRequest", "malformed HTTP request")
            return
        # httptools hands a header over only once it is whole: cap what it may gather before that.
        if self.head_bytes > self.router.max_head_bytes and self.request_started is not None and not self.headers_done:
            self._reject(*self._too_many_header_bytes())

    def check_timeouts(self, now: float) -> None:
        if self.busy or self.transport is None:
            return
        if self.request_started is not None:
            if now - self.request_started > self.limits.read_timeout_s:
                message = f"the request did not arrive whole within {self.limits.read_timeout_s:g}s"
                self._reject(408, "RequestReadTimeout", message)
        elif now - self.idle_since > self.limits.idle_timeout_s:
            # Nothing was asked: no answer, so that none is taken for the answer to a request sent meanwhile.
            self.transport.close()
            self.transport = None

    def on_message_begin(self) -> None:
        self._reset()
        self.request_started = monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_url_bytes:
            message = f"the request target is over {self.limits.max_url_bytes} bytes; send data in the body"
            raise _Refused(414, "UriTooLong", message)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value
        self.header_count += 1
        self.header_bytes += len(name) + len(value) + 4
        if self.header_count > self.limits.max_headers:
            raise _Refused(
                431, "RequestHeaderFieldsTooLarge", f"the request has over {self.limits.max_headers} header fields"
            )
        if self.header_bytes > self.limits.max_header_bytes:
            raise _Refused(*self._too_many_header_bytes())
        if len(name) + len(value) + 2 > MAX_HEADER_FIELD_BYTES:
            message = f"header {name.decode(errors='replace')[:100]} is over {MAX_HEADER_FIELD_BYTES} bytes"
            raise _Refused(431, "RequestHeaderFieldsTooLarge", message)

    def _too_many_header_bytes(self) -> tuple[int, str, str]:
        message = f"the request's headers are over {self.limits.max_header_bytes} bytes"
        return 431, "RequestHeaderFieldsTooLarge", message

    def on_headers_complete(self) -> None:
        self.headers_done = True
        length = self.headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.router.max_body_bytes:
            raise _Refused(*self._too_large())

    def _too_large(self) -> tuple[int, str, str]:
        return 413, "PayloadTooLarge", f"request body is over {self.router.max_body_bytes} bytes; send smaller batches"

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.router.max_body_bytes:
            raise _Refused(*self._too_large())
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.request_started = None
        self.head_bytes, self.headers_done = 0, False  # what comes next is the next request's head
        keep_alive = self.parser.should_keep_alive()
        self.pending.append(Request(self.parser.get_method(), self.url, self.headers, b"".join(self.body), keep_alive))
        if not self.busy:
            self._next()

    def _next(self) -> None:
        if self.transport is None or not self.pending:
            self.busy = False
            self.idle_since = monotonic()
            if self.request_started is not None:  # the next request began while this one was answered
                self.request_started = self.idle_since
            if self.transport is not None:
                self.transport.resume_reading()
            return
        self.busy = True
        self.transport.pause_reading()
        self.router.loop.create_task(self._answer(self.pending.popleft()))

    async def _answer(self, request: Request) -> None:
        try:
            answer, request_id = await self.router.dispatch(request)
        except Exception as error:  # noqa: BLE001 - a fault of the router's own is a 500, not a dropped connection
            log.error("router failed on a request: %r", error)
            answer, request_id = error_answer(500, "InternalError", "the router failed; see its log"), b""
        self._write(answer, request_id, request.keep_alive)
        if not request.keep_alive and self.transport is not None:
            self.transport.close()
            return
        self._next()

    def _write(self, answer: Answer, request_id: bytes, keep_alive: bool) -> None:
        if self.transport is None:
            return
        head = [b"HTTP/1.1 %d %s" % (answer.status, REASONS.get(answer.status, b"Unknown"))]
        for name, value in answer.headers:
            head.append(name + b": " + value)
        if request_id:
            head.append(b"x-request-id: " + request_id)
        head.append(b"content-length: %d" % len(answer.body))
        head.append(b"connection: keep-alive" if keep_alive else b"connection: close")
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + answer.body)

    def _reject(self, status: int, code: str, message: str) -> None:
        """Answer a request that cannot be parsed or read, and close: the stream is out of step."""
        self._write(error_answer(status, code, message), b"", keep_alive=False)
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class _Refused(Exception):
    """Raised inside a parser callback to answer (status, code, message) and close."""
