"""Synthetic servers for the pure tests: a load step's result computed from a model, not measured."""

from __future__ import annotations

import math
from collections.abc import Callable

from deployflow.loadtest import OPEN_LOOP, GeneratorLag, LatencyHistogram, LoadResult
from deployflow.profiling import StepMeasurement

SERVICE_MS = 5.0
_EMPTY = LatencyHistogram()  # shared: these results are only read, and a histogram is costly to make
STEP_S = 60.0  # a long step: any overload builds a queue that breaks the SLO


def step_result(rate: float, latency_ms: float, *, completed_fraction: float = 1.0) -> LoadResult:
    """A 1-second step at `rate` whose requests all took `latency_ms`; the rest timed out."""
    scheduled = max(1, math.ceil(rate))
    ok = round(scheduled * completed_fraction)
    hist = LatencyHistogram()
    for _ in range(ok):
        hist.record_ms(latency_ms)
    timeouts = scheduled - ok
    return LoadResult(
        mode=OPEN_LOOP,
        requested_rate=rate,
        scheduled=scheduled,
        sent=scheduled,
        completed=ok,
        ok=ok,
        errors={"timeout": timeouts} if timeouts else {},
        duration_s=1.0,
        generator_lag=GeneratorLag(),
        latency=hist,
        server_time=_EMPTY,
        overhead=_EMPTY,
    )


def cliff_server(capacity: float, calls: list[float] | None = None) -> Callable[[float], StepMeasurement]:
    """Flat latency up to `capacity`; above it a queue builds for a whole step and latency explodes."""

    def measure(rate: float) -> StepMeasurement:
        if calls is not None:
            calls.append(rate)
        if rate <= capacity:
            return StepMeasurement(step_result(rate, SERVICE_MS), cpu_used=rate / capacity, memory_used_gb=0.5)
        backlog_ms = STEP_S * 1000 * (rate / capacity - 1)
        return StepMeasurement(step_result(rate, SERVICE_MS + backlog_ms, completed_fraction=capacity / rate))

    return measure


def queueing_server(capacity: float) -> Callable[[float], StepMeasurement]:
    """M/M/1-like: latency = service / (1 - utilisation), so it rises smoothly toward `capacity`."""

    def measure(rate: float) -> StepMeasurement:
        utilisation = rate / capacity
        if utilisation >= 1:
            return StepMeasurement(step_result(rate, 60_000.0, completed_fraction=capacity / rate))
        return StepMeasurement(step_result(rate, SERVICE_MS / (1 - utilisation)))

    return measure


def flat_server(latency_ms: float) -> Callable[[float], StepMeasurement]:
    """Every request takes `latency_ms` at any rate: a server that is slow but never saturates."""

    def measure(rate: float) -> StepMeasurement:
        return StepMeasurement(step_result(rate, latency_ms))

    return measure
