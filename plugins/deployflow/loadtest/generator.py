"""Open-loop and closed-loop load on one event loop.

Open loop: a dispatcher hands each intended send time to a bounded set of connection
slots; a request waiting for a free slot keeps its intended time, so its latency
includes the wait (no coordinated omission). Closed loop: each slot sends its next
request when the previous one is answered, which measures service time, not queueing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from deployflow.loadtest.client import TIMEOUT, Connection, RequestFailed, resolve
from deployflow.loadtest.recorder import Recorder
from deployflow.loadtest.result import CLOSED_LOOP, OPEN_LOOP, LoadResult
from deployflow.loadtest.schedule import Schedule
from deployflow.loadtest.spec import RequestSpec

DEFAULT_MAX_IN_FLIGHT = 256
DEFAULT_LAG_THRESHOLD_MS = 10.0
_BURST = 64  # sends dispatched back to back (when behind) before the slots get to run
_GRACE_S = 5.0  # past the last deadline, before a run is declared stuck

T = TypeVar("T")


class _SendQueue:
    """Hands intended send times to idle slots, most recently idle first.

    LIFO keeps the same few connections busy at low rates instead of opening all of them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: deque[float | None] = deque()
        self._idle: list[asyncio.Future[float | None]] = []

    def put(self, item: float | None) -> bool:
        """Queue one send (None stops a slot); True when no slot was free to take it."""
        while self._idle:
            waiter = self._idle.pop()
            if not waiter.done():
                waiter.set_result(item)
                return False
        self._pending.append(item)
        return True

    async def get(self) -> float | None:
        if self._pending:
            return self._pending.popleft()
        waiter: asyncio.Future[float | None] = self._loop.create_future()
        self._idle.append(waiter)
        return await waiter


async def _send_one(conn: Connection, payload: bytes, intended: float, timeout_s: float, rec: Recorder) -> None:
    """One request, its latency counted from `intended` and its deadline too."""
    started = time.monotonic()
    rec.start(started - intended)
    remaining = intended + timeout_s - started
    if remaining <= 0:
        rec.error(TIMEOUT, started)  # waited for a slot past its deadline; never sent
        return
    rec.sent += 1
    try:
        async with asyncio.timeout(remaining):
            response = await conn.send(payload)
    except TimeoutError:
        rec.error(TIMEOUT, time.monotonic())
    except RequestFailed as exc:
        rec.error(exc.kind, time.monotonic())
    else:
        now = time.monotonic()
        rec.response(response, now - intended, now)


async def _open_slot(queue: _SendQueue, conn: Connection, payload: bytes, timeout_s: float, rec: Recorder) -> None:
    try:
        while (intended := await queue.get()) is not None:
            await _send_one(conn, payload, intended, timeout_s, rec)
    finally:
        conn.close()


async def _dispatch(queue: _SendQueue, offsets: Iterator[float], start: float, rec: Recorder) -> None:
    burst = 0
    for offset in offsets:
        due = start + offset
        delay = due - time.monotonic()
        if delay > 0:
            burst = 0
            await asyncio.sleep(delay)
        else:
            burst += 1
            if burst >= _BURST:  # behind schedule: still let responses be read
                burst = 0
                await asyncio.sleep(0)
        if queue.put(due):
            rec.lag.slot_waits += 1


async def _run_slots(slots: list[asyncio.Task[None]], body: Coroutine[Any, Any, None], bound_s: float) -> None:
    """Await `body`, then the slots, within `bound_s`; whatever is left is cancelled."""
    try:
        async with asyncio.timeout(bound_s):
            await body
            await asyncio.gather(*slots)
    except TimeoutError as exc:
        raise RuntimeError(f"load test did not finish within its bound of {bound_s:.1f} s") from exc
    finally:
        for task in slots:
            task.cancel()
        await asyncio.gather(*slots, return_exceptions=True)


async def open_loop(
    request: RequestSpec,
    schedule: Schedule,
    *,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    lag_threshold_ms: float = DEFAULT_LAG_THRESHOLD_MS,
    shard: int = 0,
    shards: int = 1,
    start_at: float | None = None,
) -> LoadResult:
    """Send `request` on `schedule` (this process's shard of it) on the running loop.

    `start_at` is a time.monotonic() value shared by worker processes, so that their
    interleaved schedules line up; every request settles by its intended time plus
    the request timeout, which bounds the whole run.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    loop = asyncio.get_running_loop()
    target = await resolve(request)
    payload = request.wire_bytes()
    rec = Recorder(lag_threshold_ms)
    queue = _SendQueue(loop)
    slots = [
        asyncio.create_task(_open_slot(queue, Connection(target), payload, request.timeout_s, rec))
        for _ in range(max_in_flight)
    ]
    start = time.monotonic() if start_at is None else start_at

    async def dispatch_all() -> None:
        await asyncio.sleep(0)  # let every slot register as idle before the first send
        await _dispatch(queue, schedule.offsets(shard, shards), start, rec)
        for _ in slots:
            queue.put(None)

    ahead_s = max(0.0, start - time.monotonic())
    await _run_slots(slots, dispatch_all(), ahead_s + schedule.duration_s + request.timeout_s + _GRACE_S)
    scheduled = schedule.shard_size(shard, shards)
    return rec.result(
        mode=OPEN_LOOP,
        requested_rate=scheduled / schedule.duration_s,
        scheduled=scheduled,
        duration_s=max(schedule.duration_s, rec.last_done - start),
    )


async def closed_loop(
    request: RequestSpec,
    *,
    duration_s: float,
    concurrency: int = 1,
    max_requests: int | None = None,
) -> LoadResult:
    """Each of `concurrency` slots sends its next request as soon as the last one settles.

    The contrast to open loop: latency here is the service time the server gives one
    client at a time, not what clients arriving at a fixed rate would see.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration_s!r}")
    target = await resolve(request)
    payload = request.wire_bytes()
    rec = Recorder(DEFAULT_LAG_THRESHOLD_MS)
    budget = math.inf if max_requests is None else max_requests
    start = time.monotonic()
    end = start + duration_s

    async def slot(conn: Connection) -> None:
        nonlocal budget
        try:
            while budget > 0 and (now := time.monotonic()) < end:
                budget -= 1
                await _send_one(conn, payload, now, request.timeout_s, rec)
        finally:
            conn.close()

    slots = [asyncio.create_task(slot(Connection(target))) for _ in range(concurrency)]
    await _run_slots(slots, asyncio.sleep(0), duration_s + request.timeout_s + _GRACE_S)
    return rec.result(
        mode=CLOSED_LOOP,
        requested_rate=0.0,
        scheduled=rec.sent,
        duration_s=max(rec.last_done - start, 1e-9),
    )


def run_on_best_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop when it is installed (it comes with Airflow), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
