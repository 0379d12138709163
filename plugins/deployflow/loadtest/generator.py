"""Open-loop and closed-loop load on one event loop.

Open loop: a dispatcher hands each intended send time to a bounded set of connection
slots; a request waiting for a free slot keeps its intended time, so its latency
includes the wait (no coordinated omission). Sends are paced on millisecond timers:
never early, at most about a millisecond late, and that lateness counts as latency.
Closed loop: each slot sends its next request when the previous one is answered,
which measures service time, not queueing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from deployflow.loadtest.client import TIMEOUT, Connection, RequestFailed, resolve
from deployflow.loadtest.guard import MAX_CONNECTIONS, MAX_DURATION_S, require_at_most
from deployflow.loadtest.recorder import Recorder
from deployflow.loadtest.result import CLOSED_LOOP, OPEN_LOOP, LoadResult
from deployflow.loadtest.schedule import Schedule
from deployflow.loadtest.spec import RequestSpec

DEFAULT_MAX_IN_FLIGHT = 256
DEFAULT_LAG_THRESHOLD_MS = 10.0
_BURST = 64  # sends dispatched back to back (when behind) before the slots get to run
_GRACE_S = 5.0  # past the last deadline, before a run is declared stuck
_TIMER_TICK_S = 0.001  # the event loop's timer granularity (uvloop: whole milliseconds)
_EXPIRY_SWEEP_S = 0.05  # longest a timed-out request waits past its deadline to be failed

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
    deadline = intended + timeout_s
    if deadline <= started:
        rec.error(TIMEOUT, started)  # waited for a slot past its deadline; never sent
        return
    rec.sent += 1
    try:
        response = await conn.send(payload, deadline)
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
        now = time.monotonic()
        if now < due:
            burst = 0
            while now < due:
                # Timers tick in whole milliseconds and can end early: wait at least a tick
                # rather than spin, so a send may be up to a tick late but is never early.
                await asyncio.sleep(max(due - now, _TIMER_TICK_S))
                now = time.monotonic()
        else:
            burst += 1
            if burst >= _BURST:  # behind schedule: still let responses be read
                burst = 0
                await asyncio.sleep(0)
                now = time.monotonic()
        rec.dispatched(now - due, queue.put(due))


async def _expire_overdue(conns: list[Connection], tick_s: float) -> None:
    """Time out overdue requests, sweeping every connection each tick (see Connection)."""
    while True:
        await asyncio.sleep(tick_s)
        now = time.monotonic()
        for conn in conns:
            conn.expire(now)


async def _run_slots(
    slots: list[asyncio.Task[None]],
    conns: list[Connection],
    body: Coroutine[Any, Any, None],
    timeout_s: float,
    bound_s: float,
) -> None:
    """Await `body`, then the slots, within `bound_s`, timing requests out meanwhile.

    Whatever is left at the bound is cancelled.
    """
    sweeper = asyncio.create_task(_expire_overdue(conns, min(_EXPIRY_SWEEP_S, timeout_s / 10)))
    try:
        async with asyncio.timeout(bound_s):
            await body
            await asyncio.gather(*slots)
    except TimeoutError as exc:
        raise RuntimeError(f"load test did not finish within its bound of {bound_s:.1f} s") from exc
    finally:
        for task in [*slots, sweeper]:
            task.cancel()
        await asyncio.gather(*slots, sweeper, return_exceptions=True)


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
    require_at_most("max_in_flight", max_in_flight, MAX_CONNECTIONS)
    loop = asyncio.get_running_loop()
    target = await resolve(request)
    payload = request.wire_bytes()
    rec = Recorder(lag_threshold_ms)
    queue = _SendQueue(loop)
    conns = [Connection(target) for _ in range(max_in_flight)]
    slots = [asyncio.create_task(_open_slot(queue, c, payload, request.timeout_s, rec)) for c in conns]
    start = time.monotonic() if start_at is None else start_at

    async def dispatch_all() -> None:
        await asyncio.sleep(0)  # let every slot register as idle before the first send
        await _dispatch(queue, schedule.offsets(shard, shards), start, rec)
        for _ in slots:
            queue.put(None)

    ahead_s = max(0.0, start - time.monotonic())
    bound_s = ahead_s + schedule.duration_s + request.timeout_s + _GRACE_S
    await _run_slots(slots, conns, dispatch_all(), request.timeout_s, bound_s)
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
    require_at_most("concurrency", concurrency, MAX_CONNECTIONS)
    require_at_most("closed-loop duration (s)", duration_s, MAX_DURATION_S)
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

    conns = [Connection(target) for _ in range(concurrency)]
    slots = [asyncio.create_task(slot(c)) for c in conns]
    await _run_slots(slots, conns, asyncio.sleep(0), request.timeout_s, duration_s + request.timeout_s + _GRACE_S)
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
