"""The outcome of a load test, mergeable across worker processes and Airflow mapped tasks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deployflow.loadtest.histogram import LatencyHistogram, Percentiles

OPEN_LOOP = "open"
CLOSED_LOOP = "closed"
LAG_TOLERANCE = 0.05  # share of late sends above which a run is said to have fallen behind


@dataclass
class GeneratorLag:
    """How far the generator fell behind its schedule, and why.

    Late sends are requests that started more than `threshold_ms` after their intended
    time. Two causes are told apart: `late_dispatches`, sends the generator's own event
    loop handed out late (it ran out of CPU), and `slot_waits`, sends that found every
    one of max_in_flight connections busy (answers did not come back fast enough).
    """

    late_sends: int = 0
    max_lag_ms: float = 0.0
    slot_waits: int = 0
    late_dispatches: int = 0
    threshold_ms: float = 10.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "late_sends": self.late_sends,
            "max_lag_ms": round(self.max_lag_ms, 3),
            "slot_waits": self.slot_waits,
            "late_dispatches": self.late_dispatches,
            "threshold_ms": self.threshold_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratorLag:
        return cls(
            late_sends=int(data["late_sends"]),
            max_lag_ms=float(data["max_lag_ms"]),
            slot_waits=int(data["slot_waits"]),
            late_dispatches=int(data["late_dispatches"]),
            threshold_ms=float(data["threshold_ms"]),
        )


@dataclass
class LoadResult:
    """Counts and latency histograms of one load test (or of several parts of one).

    Latency counts from each request's intended send time and covers successful (2xx)
    responses; failures are counted in `errors` by class: `http_<status>`, `timeout`,
    `connect`, `reset`, `protocol`. `server_time` holds the server's own x-ms-run-fn-exec-ms
    and `overhead` each response's latency minus that, so model time and round trip
    (network, queueing, server framework) are reported apart.
    """

    mode: str
    requested_rate: float
    scheduled: int
    sent: int
    completed: int
    ok: int
    errors: dict[str, int]
    duration_s: float
    generator_lag: GeneratorLag
    latency: LatencyHistogram = field(repr=False)
    server_time: LatencyHistogram = field(repr=False)
    overhead: LatencyHistogram = field(repr=False)
    workers: int = 1

    @property
    def achieved_rate(self) -> float:
        """Responses (of any status) per second of the test's wall time."""
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def achieved_fraction(self) -> float | None:
        """Achieved over requested rate (open loop); None for a closed loop, which requests none."""
        return self.achieved_rate / self.requested_rate if self.requested_rate > 0 else None

    @property
    def generator_fell_behind(self) -> bool:
        """True when more than LAG_TOLERANCE of the sends started late: the rate asked was not offered."""
        return self.mode == OPEN_LOOP and self.generator_lag.late_sends > LAG_TOLERANCE * self.scheduled

    def notes(self) -> list[str]:
        """Plain sentences on what limits this result; empty when nothing does."""
        if not self.generator_fell_behind:
            return []
        lag = self.generator_lag
        notes = [
            f"the load generator fell behind its schedule: {lag.late_sends} of {self.scheduled} sends "
            f"started over {lag.threshold_ms:g} ms late (at most {lag.max_lag_ms:.0f} ms), so the "
            f"{self.requested_rate:.1f} requests/s asked for were not offered "
            f"({self.achieved_rate:.1f}/s achieved); latency still counts from the intended send times"
        ]
        if lag.late_dispatches:
            notes.append(
                f"{lag.late_dispatches} sends were handed out late by the generator's own event loop: "
                "it ran out of CPU; use more worker processes"
            )
        if lag.slot_waits:
            notes.append(
                f"{lag.slot_waits} sends found every connection busy: answers did not come back "
                "fast enough at this concurrency (raise max_in_flight to offer more)"
            )
        return notes

    @property
    def success_rate(self) -> float:
        """Share of the scheduled requests that got a 2xx response."""
        return self.ok / self.scheduled if self.scheduled else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def latency_ms(self) -> Percentiles:
        return self.latency.percentiles()

    @property
    def server_time_ms(self) -> Percentiles:
        return self.server_time.percentiles()

    @property
    def overhead_ms(self) -> Percentiles:
        return self.overhead.percentiles()

    def merge(self, others: Iterable[LoadResult]) -> LoadResult:
        """Combine parts of one load that ran side by side (processes, mapped tasks).

        Rates and counts add up, histograms add exactly, the duration is the longest part.
        """
        return merge_results([self, *others])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: headline figures for people, encoded histograms for merging later."""
        fraction = self.achieved_fraction
        return {
            "mode": self.mode,
            "requested_rate": round(self.requested_rate, 3),
            "achieved_rate": round(self.achieved_rate, 3),
            "achieved_fraction": None if fraction is None else round(fraction, 4),
            "generator_fell_behind": self.generator_fell_behind,
            "notes": self.notes(),
            "scheduled": self.scheduled,
            "sent": self.sent,
            "completed": self.completed,
            "ok": self.ok,
            "success_rate": round(self.success_rate, 6),
            "errors": dict(sorted(self.errors.items())),
            "duration_s": round(self.duration_s, 6),
            "workers": self.workers,
            "generator_lag": self.generator_lag.to_dict(),
            "latency_ms": self.latency_ms.to_dict(),
            "server_time_ms": self.server_time_ms.to_dict(),
            "overhead_ms": self.overhead_ms.to_dict(),
            "histograms": {
                "latency": self.latency.encode(),
                "server_time": self.server_time.encode(),
                "overhead": self.overhead.encode(),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadResult:
        """Rebuild from `to_dict()`; derived figures are recomputed from the histograms."""
        try:
            histograms = data["histograms"]
            return cls(
                mode=str(data["mode"]),
                requested_rate=float(data["requested_rate"]),
                scheduled=int(data["scheduled"]),
                sent=int(data["sent"]),
                completed=int(data["completed"]),
                ok=int(data["ok"]),
                errors={str(k): int(v) for k, v in data["errors"].items()},
                duration_s=float(data["duration_s"]),
                generator_lag=GeneratorLag.from_dict(data["generator_lag"]),
                latency=LatencyHistogram.decode(histograms["latency"]),
                server_time=LatencyHistogram.decode(histograms["server_time"]),
                overhead=LatencyHistogram.decode(histograms["overhead"]),
                workers=int(data.get("workers", 1)),
            )
        except KeyError as exc:
            raise ValueError(f"not a load test result: missing field {exc.args[0]!r}") from exc


def merge_results(results: Iterable[LoadResult]) -> LoadResult:
    """Combine results of parts that ran at the same time into one (see LoadResult.merge)."""
    parts = list(results)
    if not parts:
        raise ValueError("no load test results to merge")
    modes = {p.mode for p in parts}
    if len(modes) > 1:
        raise ValueError(f"cannot merge open-loop and closed-loop results: {sorted(modes)}")
    errors: dict[str, int] = {}
    latency, server_time, overhead = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for part in parts:
        for kind, count in part.errors.items():
            errors[kind] = errors.get(kind, 0) + count
        latency.add(part.latency)
        server_time.add(part.server_time)
        overhead.add(part.overhead)
    return LoadResult(
        mode=parts[0].mode,
        requested_rate=sum(p.requested_rate for p in parts),
        scheduled=sum(p.scheduled for p in parts),
        sent=sum(p.sent for p in parts),
        completed=sum(p.completed for p in parts),
        ok=sum(p.ok for p in parts),
        errors=errors,
        duration_s=max(p.duration_s for p in parts),
        generator_lag=GeneratorLag(
            late_sends=sum(p.generator_lag.late_sends for p in parts),
            max_lag_ms=max(p.generator_lag.max_lag_ms for p in parts),
            slot_waits=sum(p.generator_lag.slot_waits for p in parts),
            late_dispatches=sum(p.generator_lag.late_dispatches for p in parts),
            threshold_ms=max(p.generator_lag.threshold_ms for p in parts),
        ),
        latency=latency,
        server_time=server_time,
        overhead=overhead,
        workers=sum(p.workers for p in parts),
    )


def chain_results(results: Iterable[LoadResult]) -> LoadResult:
    """Combine results of parts that ran one after another (a load cut into slices): counts and
    histograms add up as in ``merge_results``, but durations add too, and the requested rate is the
    whole schedule's mean."""
    parts = list(results)
    merged = merge_results(parts)
    duration = sum(p.duration_s for p in parts)
    scheduled_time = sum(p.scheduled / p.requested_rate for p in parts if p.requested_rate > 0)
    requested = merged.scheduled / scheduled_time if scheduled_time > 0 else 0.0
    return dataclasses.replace(
        merged, requested_rate=requested, duration_s=duration, workers=max(p.workers for p in parts)
    )
