"""Stress-test verdicts: a latency/error/rate objective judged against a LoadResult.

Pure: data in, data out, so a DAG task, a rollout gate and a test all judge alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from deployflow.loadtest.result import LoadResult


@dataclass(frozen=True)
class SLO:
    """What a deployment must hold under load.

    `percentile` latency of the successful requests (counted from their intended send
    times) at most `latency_ms`; failed requests at most `max_error_percent` % of those
    settled; and, when given, an achieved rate of at least `min_rate_fraction` of the
    rate requested.
    """

    latency_ms: float
    percentile: float = 99.0
    max_error_percent: float = 1.0
    min_rate_fraction: float | None = None

    def __post_init__(self) -> None:
        if not (self.latency_ms > 0 and math.isfinite(self.latency_ms)):
            raise ValueError(f"SLO latency must be a finite number of ms > 0, got {self.latency_ms!r}")
        if not 0 < self.percentile < 100:
            raise ValueError(f"SLO percentile must be between 0 and 100 (e.g. 95 or 99), got {self.percentile!r}")
        if not 0 <= self.max_error_percent <= 100:
            raise ValueError(f"SLO error rate must be a percentage in [0, 100], got {self.max_error_percent!r}")
        if self.min_rate_fraction is not None and not 0 < self.min_rate_fraction <= 1:
            raise ValueError(f"SLO min rate fraction must be in (0, 1], got {self.min_rate_fraction!r}")


@dataclass(frozen=True)
class Check:
    """One objective: what was measured against what was allowed, and whether it held."""

    name: str
    measured: float | None  # None when there was nothing to measure
    limit: float
    passed: bool
    reason: str


@dataclass(frozen=True)
class Verdict:
    """Pass or fail, with one sentence per objective and notes on the result's own limits."""

    passed: bool
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()

    @property
    def reasons(self) -> list[str]:
        """Why it failed (the failed checks' sentences), or why it passed when nothing failed."""
        failed = [c.reason for c in self.checks if not c.passed]
        return failed or [c.reason for c in self.checks]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
            "notes": list(self.notes),
        }


def evaluate_slo(slo: SLO, result: LoadResult) -> Verdict:
    """Judge `result` against `slo`; a test that settled no request at all fails."""
    if slo.min_rate_fraction is not None and result.achieved_fraction is None:
        raise ValueError("a closed-loop result has no requested rate to hold a min rate fraction against")
    settled = result.ok + result.error_count
    if settled == 0:
        check = Check("settled_requests", 0, 1, False, "no request was settled: there is nothing to judge")
        return Verdict(False, (check,), tuple(result.notes()))
    checks = [_latency(slo, result), _errors(slo, result, settled)]
    if slo.min_rate_fraction is not None:
        checks.append(_rate(result, slo.min_rate_fraction))
    return Verdict(all(c.passed for c in checks), tuple(checks), tuple(result.notes()))


def _latency(slo: SLO, result: LoadResult) -> Check:
    name = f"p{slo.percentile:g}"
    if result.latency.count == 0:
        reason = f"{name} latency is unknown: no request succeeded"
        return Check(f"{name}_ms", None, slo.latency_ms, False, reason)
    measured = result.latency.value_at_ms(slo.percentile)
    passed = measured <= slo.latency_ms
    verb = "within" if passed else "over"
    reason = f"{name} latency {measured:.1f} ms is {verb} the {slo.latency_ms:g} ms objective"
    return Check(f"{name}_ms", measured, slo.latency_ms, passed, reason)


def _errors(slo: SLO, result: LoadResult, settled: int) -> Check:
    percent = 100.0 * result.error_count / settled
    passed = percent <= slo.max_error_percent
    verb = "within" if passed else "over"
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(result.errors.items()))
    detail = f" ({kinds})" if kinds else ""
    reason = f"error rate {percent:.2f} %{detail} is {verb} the {slo.max_error_percent:g} % objective"
    return Check("error_percent", percent, slo.max_error_percent, passed, reason)


def _rate(result: LoadResult, limit: float) -> Check:
    fraction = result.achieved_fraction or 0.0
    passed = fraction >= limit
    verb = "meets" if passed else "misses"
    reason = (
        f"achieved {result.achieved_rate:.1f} of {result.requested_rate:.1f} requests/s "
        f"({fraction:.0%}), which {verb} the {limit:.0%} objective"
    )
    return Check("achieved_rate_fraction", fraction, limit, passed, reason)
