"""The highest request rate a deployment sustains within its SLO, found in few load steps.

Exponential ramp (x2) until a step fails, then bisection between the last pass and the
first fail until they are within `precision` of each other. Pure: the load step itself
is the injected `measure`, so a synthetic server model and a real one are searched alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deployflow.loadtest import SLO, LoadResult, Percentiles, evaluate_slo

RAMP = "ramp"
BISECT = "bisect"
DEFAULT_MAX_STEPS = 12


@dataclass(frozen=True)
class StepMeasurement:
    """What one constant-rate load step gave: the load result, and the server's usage when known."""

    result: LoadResult
    cpu_used: float | None = None  # cores, averaged over the step
    memory_used_gb: float | None = None  # peak over the step
    split: dict[str, Any] | None = None  # a step sent by several parts: who sent what, and its notes


@dataclass(frozen=True)
class SearchStep:
    """One load step of the search, judged against the SLO."""

    phase: str
    requested_rate: float
    achieved_rate: float
    success_rate: float
    passed: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    latency_ms: Percentiles
    cpu_used: float | None = None
    memory_used_gb: float | None = None
    split: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "requestedQueriesPerSecond": round(self.requested_rate, 3),
            "measuredQueriesPerSecond": round(self.achieved_rate, 3),
            "successRate": round(self.success_rate, 6),
            "passed": self.passed,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "latencyMs": self.latency_ms.to_dict(),
            "cpuUsed": self.cpu_used,
            "memoryUsedInGB": self.memory_used_gb,
            "split": self.split,
        }


@dataclass(frozen=True)
class SearchResult:
    """Every step taken, the highest passing rate (None when none passed) and why the search stopped."""

    steps: tuple[SearchStep, ...]
    max_sustainable_rate: float | None
    lowest_failing_rate: float | None
    converged: bool
    stop_reason: str

    @property
    def viable(self) -> bool:
        return self.max_sustainable_rate is not None

    @property
    def sustainable_step(self) -> SearchStep | None:
        """The passing step at the highest rate: its latencies are the ones to quote."""
        passing = [s for s in self.steps if s.passed]
        return max(passing, key=lambda s: s.requested_rate) if passing else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "maxSustainableQueriesPerSecond": self.max_sustainable_rate,
            "lowestFailingQueriesPerSecond": self.lowest_failing_rate,
            "converged": self.converged,
            "stopReason": self.stop_reason,
            "steps": [s.to_dict() for s in self.steps],
        }


def find_max_sustainable_rate(
    measure: Callable[[float], StepMeasurement],
    slo: SLO,
    *,
    start_rate: float,
    max_rate: float,
    precision: float = 0.05,
    max_steps: int = DEFAULT_MAX_STEPS,
    min_rate: float | None = None,
) -> SearchResult:
    """Search the highest rate in [min_rate or start_rate, max_rate] at which `measure` meets `slo`.

    When the start rate already fails and `min_rate` is given, the ramp halves down to it
    first. Stops when (fail - pass) / pass <= precision, at max_rate, or after max_steps.
    """
    _check_bounds(start_rate, max_rate, precision, max_steps, min_rate)
    steps: list[SearchStep] = []

    def run(rate: float, phase: str) -> bool:
        steps.append(_judge(phase, rate, measure(rate), slo))
        return steps[-1].passed

    passed: float | None = None
    failed: float | None = None
    rate = start_rate
    while len(steps) < max_steps:  # ramp up from start_rate, or down towards min_rate
        if run(rate, RAMP):
            passed = rate
            if failed is not None or rate >= max_rate:
                break
            rate = min(rate * 2, max_rate)
        else:
            failed = rate
            if passed is not None or min_rate is None or rate / 2 < min_rate:
                break
            rate = rate / 2
    if passed is None:
        reason = "no step met the SLO" if failed is not None else "max_steps reached before any step"
        return SearchResult(tuple(steps), None, failed, False, reason)
    if failed is None:
        done = passed >= max_rate
        reason = "met the SLO at max_rate" if done else "max_steps reached while ramping"
        return SearchResult(tuple(steps), passed, None, done, reason)
    while (failed - passed) / passed > precision and len(steps) < max_steps:
        mid = (passed + failed) / 2
        if run(mid, BISECT):
            passed = mid
        else:
            failed = mid
    converged = (failed - passed) / passed <= precision
    reason = f"pass and fail within {precision:.0%}" if converged else "max_steps reached while bisecting"
    return SearchResult(tuple(steps), passed, failed, converged, reason)


def _judge(phase: str, rate: float, measured: StepMeasurement, slo: SLO) -> SearchStep:
    verdict = evaluate_slo(slo, measured.result)
    result = measured.result
    return SearchStep(
        phase=phase,
        requested_rate=rate,
        achieved_rate=result.achieved_rate,
        success_rate=result.success_rate,
        passed=verdict.passed,
        reasons=tuple(verdict.reasons),
        notes=(*verdict.notes, *(measured.split or {}).get("notes", ())),
        latency_ms=result.latency_ms,
        cpu_used=measured.cpu_used,
        memory_used_gb=measured.memory_used_gb,
        split=measured.split,
    )


def _check_bounds(start_rate: float, max_rate: float, precision: float, max_steps: int, min_rate: float | None) -> None:
    if not start_rate > 0:
        raise ValueError(f"start_rate must be > 0 requests/s, got {start_rate!r}")
    if not max_rate >= start_rate:
        raise ValueError(f"max_rate ({max_rate!r}) must be at least start_rate ({start_rate!r})")
    if min_rate is not None and not 0 < min_rate <= start_rate:
        raise ValueError(f"min_rate must be in (0, start_rate={start_rate!r}], got {min_rate!r}")
    if not 0 < precision < 1:
        raise ValueError(f"precision is a fraction in (0, 1) such as 0.05, got {precision!r}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
