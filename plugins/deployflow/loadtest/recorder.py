"""Tallies one process's requests while a test runs, then freezes them into a LoadResult."""

from __future__ import annotations

from deployflow.loadtest.histogram import LatencyHistogram
from deployflow.loadtest.result import GeneratorLag, LoadResult

_BATCH = 1024  # latencies held here before they go to the histogram


class Recorder:
    """Counters and histograms, updated from the event loop only (no locking needed)."""

    def __init__(self, lag_threshold_ms: float) -> None:
        self.lag_threshold_s = lag_threshold_ms / 1e3
        self.lag = GeneratorLag(threshold_ms=lag_threshold_ms)
        self.latency = LatencyHistogram()
        self.server_time = LatencyHistogram()
        self.overhead = LatencyHistogram()
        self.sent = 0
        self.completed = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.last_done = 0.0  # monotonic time of the last settled request
        self._max_lag_s = 0.0
        self._latencies_us: list[int] = []  # handed to the histogram in bulk

    def dispatched(self, late_s: float, waits: bool) -> None:
        """The dispatcher handed out a send `late_s` after its time; `waits` if no slot was free."""
        if late_s > self.lag_threshold_s:
            self.lag.late_dispatches += 1
        if waits:
            self.lag.slot_waits += 1

    def start(self, lag_s: float) -> None:
        """A request left its queue `lag_s` after its intended time."""
        if lag_s > self._max_lag_s:
            self._max_lag_s = lag_s
        if lag_s > self.lag_threshold_s:
            self.lag.late_sends += 1

    def response(self, status: int, server_ms: float | None, latency_s: float, now: float) -> None:
        self.completed += 1
        self.last_done = now
        if 200 <= status < 300:
            self.ok += 1
            latencies = self._latencies_us
            latencies.append(int(latency_s * 1e6))
            if len(latencies) >= _BATCH:
                self.latency.record_many_us(latencies)
                latencies.clear()
            if server_ms is not None:
                self.server_time.record_ms(server_ms)
                self.overhead.record_s(latency_s - server_ms / 1e3)
        else:
            # Still a completed response (it counts in the achieved rate), but an error.
            self.error(f"http_{status}", now)

    def error(self, kind: str, now: float) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_done = now

    def result(self, *, mode: str, requested_rate: float, scheduled: int, duration_s: float) -> LoadResult:
        self.latency.record_many_us(self._latencies_us)
        self._latencies_us.clear()
        self.lag.max_lag_ms = max(self.lag.max_lag_ms, self._max_lag_s * 1e3)
        return LoadResult(
            mode=mode,
            requested_rate=requested_rate,
            scheduled=scheduled,
            sent=self.sent,
            completed=self.completed,
            ok=self.ok,
            errors=dict(self.errors),
            duration_s=duration_s,
            generator_lag=self.lag,
            latency=self.latency,
            server_time=self.server_time,
            overhead=self.overhead,
        )
