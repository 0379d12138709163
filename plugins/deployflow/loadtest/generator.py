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

from deployflow.loadtest.client import TIMEOUT, Connection, Target, WriteBatch, resolve
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


class _Slot:
    """One connection and the request on it: records how each ended, then asks its load for more."""

    def __init__(self, load: _Load, target: Target, payload: bytes) -> None:
        self._load = load
        self._rec = load.rec
        self._timeout_s = load.timeout_s
        self._intended = 0.0
        self.conn = Connection(target, payload, self, load.batch)

    def send(self, intended: float, now: float) -> bool:
        """Send the request meant for `intended`; False (a timeout) if its deadline passed before."""
        deadline = intended + self._timeout_s
        if deadline <= now:
            self._rec.error(TIMEOUT, now)  # waited for a slot past its deadline; never sent
            return False
        self._intended = intended
        self._rec.sent += 1
        self.conn.send(deadline)
        return True

    # Connection's owner: one clock reading per response, which is also the next send's time.

    def answered(self, status: int, server_ms: float | None) -> None:
        now = time.monotonic()
        self._rec.response(status, server_ms, now - self._intended, now)
        self._load.next(self, now)

    def failed(self, kind: str) -> None:
        now = time.monotonic()
        self._rec.error(kind, now)
        self._load.next(self, now)


class _Load:
    """The slots of one run and what they send next; `finished` resolves when all are done."""

    def __init__(self, request: RequestSpec, target: Target, rec: Recorder, slots: int) -> None:
        self.rec = rec
        self.timeout_s = request.timeout_s
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.batch = WriteBatch()
        payload = request.wire_bytes()
        self.slots = [_Slot(self, target, payload) for _ in range(slots)]

    def next(self, slot: _Slot, now: float) -> None:
        """`slot`'s request has settled at `now`: give it the next one, or let it rest."""
        raise NotImplementedError

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)

    def expire(self, now: float) -> None:
        for slot in self.slots:
            slot.conn.expire(now)

    async def close(self) -> None:
        opening = [task for slot in self.slots if (task := slot.conn.close()) is not None]
        await asyncio.gather(*opening, return_exceptions=True)


class _OpenLoad(_Load):
    """Hands intended send times to idle slots, most recently idle first; the rest wait in order.

    LIFO keeps the same few connections busy at low rates instead of opening all of them.
    """

    def __init__(self, request: RequestSpec, target: Target, rec: Recorder, slots: int) -> None:
        super().__init__(request, target, rec, slots)
        self._idle = list(self.slots)
        self._waiting: deque[float] = deque()
        self._dispatching = True

    def put(self, intended: float, now: float) -> None:
        """The send meant for `intended`, handed out at `now`."""
        waits = not self._idle
        self.rec.dispatched(now - intended, waits)
        if waits:
            self._waiting.append(intended)
        else:
            self._start(self._idle.pop(), intended, now)

    def dispatched_all(self) -> None:
        self._dispatching = False
        if len(self._idle) == len(self.slots):
            self._finish()

    def next(self, slot: _Slot, now: float) -> None:
        if self._waiting:
            self._start(slot, self._waiting.popleft(), now)
        else:
            self._rest(slot)

    def _start(self, slot: _Slot, intended: float, now: float) -> None:
        while True:
            self.rec.start(now - intended)
            if slot.send(intended, now):
                return
            if not self._waiting:
                self._rest(slot)
                return
            intended = self._waiting.popleft()

    def _rest(self, slot: _Slot) -> None:
        self._idle.append(slot)
        if not self._dispatching and len(self._idle) == len(self.slots):
            self._finish()


class _ClosedLoad(_Load):
    """Each slot sends again as soon as its last request settles, until the budget or time runs out."""

    def __init__(
        self, request: RequestSpec, target: Target, rec: Recorder, slots: int, end: float, budget: float
    ) -> None:
        super().__init__(request, target, rec, slots)
        self._end = end
        self._budget = budget
        self._resting = 0

    def begin(self) -> None:
        for slot in self.slots:
            self.next(slot, time.monotonic())

    def next(self, slot: _Slot, now: float) -> None:
        if self._budget > 0 and now < self._end:
            self._budget -= 1
            slot.send(now, now)
            return
        self._resting += 1
        if self._resting == len(self.slots):
            self._finish()


async def _dispatch(load: _OpenLoad, offsets: Iterator[float], start: float) -> None:
    burst = 0
    for offset in offsets:
        due = start + offset
        now = time.monotonic()
        if now < due:
            burst = 0
            while now < due:
                # Timers tick in whole milliseconds and can end early: wait at least a tick
                # rather than spin, so a send may be up to a tick late but is never early.
                load.batch.flush()
                await asyncio.sleep(max(due - now, _TIMER_TICK_S))
                now = time.monotonic()
        else:
            burst += 1
            if burst >= _BURST:  # behind schedule: still let responses be read
                burst = 0
                load.batch.flush()
                await asyncio.sleep(0)
                now = time.monotonic()
        load.put(due, now)
    load.batch.flush()
    load.dispatched_all()


async def _expire_overdue(load: _Load, tick_s: float) -> None:
    """Time out overdue requests, sweeping every connection each tick (see Connection)."""
    while True:
        await asyncio.sleep(tick_s)
        load.expire(time.monotonic())


async def _run(load: _Load, body: Coroutine[Any, Any, None], bound_s: float) -> None:
    """Await `body`, then every slot, within `bound_s`, timing requests out meanwhile.

    Whatever is left at the bound is cancelled.
    """
    sweeper = asyncio.create_task(_expire_overdue(load, min(_EXPIRY_SWEEP_S, load.timeout_s / 10)))
    try:
        async with asyncio.timeout(bound_s):
            await body
            await load.finished
    except TimeoutError as exc:
        raise RuntimeError(f"load test did not finish within its bound of {bound_s:.1f} s") from exc
    finally:
        sweeper.cancel()
        await load.close()
        await asyncio.gather(sweeper, return_exceptions=True)


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
    target = await resolve(request)
    rec = Recorder(lag_threshold_ms)
    load = _OpenLoad(request, target, rec, max_in_flight)
    start = time.monotonic() if start_at is None else start_at
    ahead_s = max(0.0, start - time.monotonic())
    bound_s = ahead_s + schedule.duration_s + request.timeout_s + _GRACE_S
    await _run(load, _dispatch(load, schedule.offsets(shard, shards), start), bound_s)
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
    rec = Recorder(DEFAULT_LAG_THRESHOLD_MS)
    budget = math.inf if max_requests is None else max_requests
    start = time.monotonic()
    load = _ClosedLoad(request, target, rec, concurrency, start + duration_s, budget)
    load.begin()
    await _run(load, asyncio.sleep(0), duration_s + request.timeout_s + _GRACE_S)
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
