"""Synthetic histograms and results for the pure tests (no server, no clock)."""

from __future__ import annotations

import random

from deployflow.loadtest import CLOSED_LOOP, OPEN_LOOP, GeneratorLag, LatencyHistogram, LoadResult


def lognormal_ms(seed: int, n: int) -> list[float]:
    """Long-tailed latencies in ms, reproducible from `seed`."""
    rng = random.Random(seed)
    return [rng.lognormvariate(3.0, 1.2) for _ in range(n)]


def histogram_of(values_ms: list[float]) -> LatencyHistogram:
    hist = LatencyHistogram()
    for value in values_ms:
        hist.record_ms(value)
    return hist


def make_result(
    values_ms: list[float],
    *,
    errors: dict[str, int] | None = None,
    duration_s: float = 10.0,
    requested_rate: float | None = None,
    lag: GeneratorLag | None = None,
    mode: str = OPEN_LOOP,
) -> LoadResult:
    """A result whose successful requests took `values_ms`, each also timed by the server at half."""
    errors = errors or {}
    settled = len(values_ms) + sum(errors.values())
    if requested_rate is None:
        requested_rate = 0.0 if mode == CLOSED_LOOP else settled / duration_s  # closed loops ask none
    return LoadResult(
        mode=mode,
        requested_rate=requested_rate,
        scheduled=settled,
        sent=settled,
        completed=len(values_ms),
        ok=len(values_ms),
        errors=errors,
        duration_s=duration_s,
        generator_lag=lag or GeneratorLag(),
        latency=histogram_of(values_ms),
        server_time=histogram_of([v / 2 for v in values_ms]),
        overhead=histogram_of([v / 2 for v in values_ms]),
    )
