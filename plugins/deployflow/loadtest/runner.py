"""Blocking entry points: one process, or N spawned worker processes merged into one result.

One event loop saturates one core; N workers each send every N-th request of the same
schedule from a shared start time, so together they keep the requested rate.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from typing import Any

from deployflow.loadtest.generator import (
    DEFAULT_LAG_THRESHOLD_MS,
    DEFAULT_MAX_IN_FLIGHT,
    closed_loop,
    open_loop,
    run_on_best_loop,
)
from deployflow.loadtest.guard import MAX_WORKERS, require_at_most
from deployflow.loadtest.result import LoadResult, chain_results, merge_results
from deployflow.loadtest.schedule import Schedule
from deployflow.loadtest.spec import RequestSpec

# the shortest slice of a load cut for credentials that expire (a token closer to its end is still used)
MIN_SLICE_S = 30.0
STARTUP_TIMEOUT_S = 60.0  # for every worker to be imported and ready
_START_DELAY_S = 0.05  # between "go" and the first send, so every worker is waiting
_POLL_S = 0.2


def run_open_loop(
    request: RequestSpec,
    schedule: Schedule,
    *,
    workers: int = 1,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    lag_threshold_ms: float = DEFAULT_LAG_THRESHOLD_MS,
) -> LoadResult:
    """Open-loop load at the schedule's rate; `max_in_flight` is shared among the workers."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    require_at_most("workers", workers, MAX_WORKERS)
    if workers == 1:
        return run_on_best_loop(
            open_loop(request, schedule, max_in_flight=max_in_flight, lag_threshold_ms=lag_threshold_ms)
        )
    return _run_workers(request, schedule, workers, math.ceil(max_in_flight / workers), lag_threshold_ms)


def run_open_loop_refreshing(
    request_for: Callable[[], tuple[RequestSpec, float | None]],
    schedule: Schedule,
    *,
    workers: int = 1,
    min_slice_s: float = MIN_SLICE_S,
    clock: Callable[[], float] = time.time,
) -> LoadResult:
    """``run_open_loop`` with credentials that expire: ``request_for()`` gives the request and until
    when (``clock`` seconds) its headers may be used, or None for ever. A load that would outlast
    them is cut into slices, each sent with a request asked for just before it, and the slices'
    results are chained; a load they outlast is one run, as ``run_open_loop``."""
    parts: list[LoadResult] = []
    remaining: Schedule | None = schedule
    while remaining is not None:
        request, until = request_for()
        budget = None if until is None else until - clock()
        if budget is None or budget >= remaining.duration_s:
            piece, remaining = remaining, None
        else:
            piece, remaining = remaining.split_at(max(budget, min_slice_s))
        parts.append(run_open_loop(request, piece, workers=workers))
    return parts[0] if len(parts) == 1 else chain_results(parts)


def run_closed_loop(
    request: RequestSpec,
    *,
    duration_s: float,
    concurrency: int = 1,
    max_requests: int | None = None,
) -> LoadResult:
    """Closed-loop load: `concurrency` clients, each waiting for its answer before the next."""
    return run_on_best_loop(
        closed_loop(request, duration_s=duration_s, concurrency=concurrency, max_requests=max_requests)
    )


def _worker_main(
    index: int,
    workers: int,
    request: RequestSpec,
    schedule: Schedule,
    max_in_flight: int,
    lag_threshold_ms: float,
    messages: Any,
    go: Any,
    start_at: Any,
) -> None:
    """Body of one spawned worker: report ready, wait for the shared start, run a shard."""
    try:
        messages.put(("ready", index, None))
        if not go.wait(STARTUP_TIMEOUT_S):
            raise TimeoutError("never told to start")
        result = run_on_best_loop(
            open_loop(
                request,
                schedule,
                max_in_flight=max_in_flight,
                lag_threshold_ms=lag_threshold_ms,
                shard=index,
                shards=workers,
                start_at=start_at.value,
            )
        )
        messages.put(("result", index, result.to_dict()))
    except Exception:  # forwarded: the parent raises it with this traceback
        messages.put(("error", index, traceback.format_exc()))


def _run_workers(
    request: RequestSpec, schedule: Schedule, workers: int, max_in_flight: int, lag_threshold_ms: float
) -> LoadResult:
    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0, lock=False)
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(i, workers, request, schedule, max_in_flight, lag_threshold_ms, messages, go, start_at),
            name=f"loadtest-worker-{i}",
            daemon=True,
        )
        for i in range(workers)
    ]
    try:
        for proc in procs:
            proc.start()
        _collect(messages, procs, "ready", time.monotonic() + STARTUP_TIMEOUT_S)
        # time.monotonic() is CLOCK_MONOTONIC, one clock for every process on the machine.
        start_at.value = time.monotonic() + _START_DELAY_S
        go.set()
        bound = _START_DELAY_S + schedule.duration_s + request.timeout_s + 30.0
        parts = _collect(messages, procs, "result", time.monotonic() + bound)
    finally:
        for proc in procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5.0)
    return merge_results(LoadResult.from_dict(part) for part in parts)


def _collect(messages: Any, procs: list[SpawnProcess], kind: str, deadline: float) -> list[Any]:
    """One `kind` message from every worker, failing fast if a worker errs or dies."""
    got: dict[int, Any] = {}
    while len(got) < len(procs):
        if time.monotonic() > deadline:
            raise TimeoutError(f"load test workers {sorted(set(range(len(procs))) - set(got))} sent no {kind}")
        try:
            msg_kind, index, payload = messages.get(timeout=_POLL_S)
        except queue.Empty:
            dead = [p.name for i, p in enumerate(procs) if i not in got and p.exitcode is not None]
            if dead:
                raise RuntimeError(f"load test worker(s) exited early: {dead}") from None
            continue
        if msg_kind == "error":
            raise RuntimeError(f"load test worker {index} failed:\n{payload}")
        if msg_kind == kind:
            got[index] = payload
    return [got[i] for i in range(len(procs))]
