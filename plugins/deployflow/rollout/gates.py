"""Rollout gates: the new deployment's window of traffic judged against limits and the current one.

Pure: counts and percentiles in, a verdict with one readable line per metric out. A verdict is
pass, fail (roll back) or inconclusive (too little traffic, or a metric that was not measured);
a dry run, which sends no traffic, records "not judged" and goes on as if the gate had passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_JUDGED = "not judged"


@dataclass(frozen=True)
class WindowStats:
    """What one deployment served during a step's window (or so far in it).

    `requests` counts every request sent, failed ones included. 5xx covers the router's own
    502/503 when a replica fails; 4xx are the caller's fault and are not errors unless the gate
    says so. Latency percentiles are in ms, None when nothing was measured.
    """

    requests: int
    errors_5xx: int = 0
    timeouts: int = 0
    errors_4xx: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    deployment: str | None = None

    def __post_init__(self) -> None:
        who = self.deployment or "window"
        for name in ("requests", "errors_5xx", "timeouts", "errors_4xx"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{who}: {name} must be a whole number >= 0, got {value!r}")
        if self.errors_5xx + self.timeouts + self.errors_4xx > self.requests:
            raise ValueError(
                f"{who}: {self.errors_5xx} 5xx + {self.timeouts} timeouts + {self.errors_4xx} 4xx "
                f"are more than the {self.requests} requests sent; `requests` must count failed requests too"
            )
        for name in ("p50_ms", "p95_ms", "p99_ms"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{who}: {name} must be a finite number of ms >= 0, got {value!r}")

    @property
    def answered(self) -> int:
        """Requests answered without an error of any class: the samples the latency percentiles come from."""
        return self.requests - self.errors_5xx - self.timeouts - self.errors_4xx

    def errors(self, *, count_4xx: bool = False) -> int:
        return self.errors_5xx + self.timeouts + (self.errors_4xx if count_4xx else 0)

    def error_rate(self, *, count_4xx: bool = False) -> float | None:
        """Errors per request sent, None when there were no requests."""
        return self.errors(count_4xx=count_4xx) / self.requests if self.requests else None

    def describe_errors(self, *, count_4xx: bool = False) -> str:
        """'12 of 500 requests: 10 5xx, 2 timeouts' — which classes the errors were."""
        classes = [(self.errors_5xx, "5xx"), (self.timeouts, "timeouts")]
        if count_4xx:
            classes.append((self.errors_4xx, "4xx"))
        parts = [f"{n} {label}" for n, label in classes if n]
        detail = f": {', '.join(parts)}" if parts else ""
        return f"{self.errors(count_4xx=count_4xx)} of {self.requests} requests{detail}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowStats:
        return cls(**_known_keys(cls, data, "window stats"))


@dataclass(frozen=True)
class GateSpec:
    """The limits a step's window must hold; None switches a limit off.

    Rates are fractions (0.01 is 1 %); `max_error_rate_increase` is in the same units over the
    current deployment's rate. No verdict is given on fewer than `min_requests` requests to the
    new deployment.

    Ratios compare the new deployment's percentile with the current one's, and on a shared,
    noisy machine a tail percentile moves a lot between two windows of the same model. So
    (1) a percentile is judged only when each side has at least `min_tail_samples` answers
    beyond it (a p99 from 1,000 answers rests on its 10 slowest; from 100, on its slowest one);
    with fewer, the highest percentile the window can bear stands in (p95, then p50), and the
    reason says so; and (2) a ratio is a regression only when the new deployment is slower by
    more than `latency_ratio_floor_ms` as well: a ratio above the limit *and* a difference
    above the floor. The same stand-in rule applies to the absolute limits (`max_p99_ms`).
    """

    max_error_rate: float | None = 0.01
    max_error_rate_increase: float | None = None
    max_p95_ms: float | None = None
    max_p95_ratio: float | None = None
    max_p99_ms: float | None = None
    max_p99_ratio: float | None = None
    min_requests: int = 50
    count_4xx_as_errors: bool = False
    latency_ratio_floor_ms: float = 25.0
    min_tail_samples: int = 10
    #: at a mirror step: the fraction of recorded requests both deployments must answer alike
    min_agreement: float | None = None
    agreement_rel_tol: float = 0.01
    agreement_abs_tol: float = 1e-6

    def __post_init__(self) -> None:
        problems = []
        for name in ("max_error_rate", "max_error_rate_increase", "min_agreement"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and 0 <= value <= 1):
                problems.append(f"{name} is a fraction from 0 to 1 (0.01 is 1 %), got {value!r}")
        for name in ("max_p95_ms", "max_p99_ms"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value > 0):
                problems.append(f"{name} must be a number of ms > 0, got {value!r}")
        for name in ("max_p95_ratio", "max_p99_ratio"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value >= 1):
                problems.append(
                    f"{name} must be >= 1 (1.5 allows 50 % slower than the current deployment), got {value!r}"
                )
        for name in ("min_requests", "min_tail_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("agreement_rel_tol", "agreement_abs_tol"):
            if not (_is_number(getattr(self, name)) and getattr(self, name) >= 0):
                problems.append(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        floor = self.latency_ratio_floor_ms
        if not (_is_number(floor) and floor >= 0):
            problems.append(f"latency_ratio_floor_ms must be a number of ms >= 0, got {floor!r}")
        if problems:
            raise ValueError("rollout gates: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateSpec:
        return cls(**_known_keys(cls, data, "rollout gates"))


@dataclass(frozen=True)
class GateResult:
    """A verdict and why: one line per metric naming the measured value and the limit."""

    verdict: Verdict
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(Verdict(data["verdict"]), tuple(data.get("reasons", ())))


def evaluate_gate(spec: GateSpec, candidate: WindowStats, baseline: WindowStats | None) -> GateResult:
    """Judge the new deployment's window; `baseline` is the current deployment's, None when there is none.

    Any failed check fails the gate; else any check that cannot be judged makes it
    inconclusive. Without a baseline the relative limits are skipped, and the reasons say so.
    """
    new = candidate.deployment or "new deployment"
    if candidate.requests < spec.min_requests:
        certain = early_failure(spec, candidate, expected_requests=spec.min_requests)
        if certain is not None:
            return certain
        return GateResult(
            Verdict.INCONCLUSIVE,
            (f"{new}: only {candidate.requests} requests, fewer than the {spec.min_requests} needed for a verdict",),
        )
    checks = [*_error_checks(spec, candidate, baseline)]
    for percentile in ("p95", "p99"):
        checks.extend(_latency_checks(spec, percentile, candidate, baseline))
    if baseline is None and _has_relative_limits(spec):
        checks.append((Verdict.PASS, f"{new}: no current deployment to compare with, relative limits not checked"))
    for verdict in (Verdict.FAIL, Verdict.INCONCLUSIVE):
        lines = tuple(line for v, line in checks if v is verdict)
        if lines:
            return GateResult(verdict, lines)
    return GateResult(Verdict.PASS, tuple(line for _, line in checks) or (f"{new}: no limits configured",))


def agreement_check(spec: GateSpec, compared: int, agreed: int, new: str, old: str) -> GateResult | None:
    """The ``min_agreement`` verdict on a shadow comparison; None when the limit is off."""
    if spec.min_agreement is None:
        return None
    if not compared:
        return GateResult(Verdict.INCONCLUSIVE, (f"{new}: no request was answered by {old} to compare with",))
    rate = agreed / compared
    below = rate < spec.min_agreement - 1e-9
    verb = "is below" if below else "meets"
    line = (
        f"{new}: answered {agreed} of {compared} recorded requests as {old} does ({_pct(rate)}), "
        f"{verb} the minimum agreement of {_pct(spec.min_agreement)}"
    )
    return GateResult(Verdict.FAIL if below else Verdict.PASS, (line,))


def early_failure(spec: GateSpec, so_far: WindowStats, *, expected_requests: int) -> GateResult | None:
    """A FAIL before the window ends, when the errors so far break the error-rate limit even if
    every remaining request succeeds; None while the window can still pass.

    The rate is taken over the most requests the window can count: the expected total, the
    requests so far, or `min_requests`, whichever is largest.
    """
    if spec.max_error_rate is None:
        return None
    errors = so_far.errors(count_4xx=spec.count_4xx_as_errors)
    total = max(expected_requests, so_far.requests, spec.min_requests)
    best_rate = errors / total
    if not _above(best_rate, spec.max_error_rate):
        return None
    new = so_far.deployment or "new deployment"
    remaining = total - so_far.requests
    return GateResult(
        Verdict.FAIL,
        (
            f"{new}: error rate cannot end within the limit of {_pct(spec.max_error_rate)}: "
            f"{so_far.describe_errors(count_4xx=spec.count_4xx_as_errors)} so far; even if the "
            f"{remaining} still to come of {total} succeed, the rate is {_pct(best_rate)}",
        ),
    )


def _error_checks(spec: GateSpec, candidate: WindowStats, baseline: WindowStats | None) -> list[tuple[Verdict, str]]:
    count_4xx = spec.count_4xx_as_errors
    new = candidate.deployment or "new deployment"
    rate = candidate.error_rate(count_4xx=count_4xx) or 0.0
    measured = f"error rate {_pct(rate)} ({candidate.describe_errors(count_4xx=count_4xx)})"
    checks = []
    if spec.max_error_rate is not None:
        over = _above(rate, spec.max_error_rate)
        verb = "is above" if over else "is within"
        checks.append(
            (
                Verdict.FAIL if over else Verdict.PASS,
                f"{new}: {measured} {verb} the limit of {_pct(spec.max_error_rate)}",
            )
        )
    if spec.max_error_rate_increase is not None and baseline is not None:
        old = baseline.deployment or "current deployment"
        if baseline.requests < spec.min_requests:
            line = f"{new}: {old} served only {baseline.requests} requests, too few to compare error rates with"
            checks.append((Verdict.INCONCLUSIVE, line))
        else:
            base_rate = baseline.error_rate(count_4xx=count_4xx) or 0.0
            increase = rate - base_rate
            over = _above(increase, spec.max_error_rate_increase)
            verb = "more than" if over else "within"
            line = (
                f"{new}: error rate {_pct(rate)} is {_points(increase)} over {old}'s {_pct(base_rate)}, "
                f"{verb} the allowed {_points(spec.max_error_rate_increase)}"
            )
            checks.append((Verdict.FAIL if over else Verdict.PASS, line))
    return checks


def _latency_checks(
    spec: GateSpec, percentile: str, candidate: WindowStats, baseline: WindowStats | None
) -> list[tuple[Verdict, str]]:
    limit_ms = getattr(spec, f"max_{percentile}_ms")
    limit_ratio = getattr(spec, f"max_{percentile}_ratio")
    new = candidate.deployment or "new deployment"
    if limit_ms is None and (limit_ratio is None or baseline is None):
        return []
    if getattr(candidate, f"{percentile}_ms") is None:
        return [(Verdict.INCONCLUSIVE, f"{new}: {percentile} latency was not measured")]
    if limit_ratio is not None and baseline is not None and baseline.requests < spec.min_requests:
        old = baseline.deployment or "current deployment"
        return [(Verdict.INCONCLUSIVE, f"{new}: {old} has no {percentile} latency from {spec.min_requests}+ requests")]
    judged = judged_percentile(spec, percentile, candidate, baseline if limit_ratio is not None else None)
    if judged is None:
        return [(Verdict.PASS, f"{new}: {percentile} not judged: {candidate.answered} answers are too few for any "
                               f"percentile ({spec.min_tail_samples} beyond it)")]  # fmt: skip
    measured = getattr(candidate, f"{judged}_ms")
    stand_in = f"{percentile} (judged by {judged}: too few answers for {percentile})"
    name = percentile if judged == percentile else stand_in
    checks: list[tuple[Verdict, str]] = []
    if limit_ms is not None:
        over = _above(measured, limit_ms)
        verb = "is above" if over else "is within"
        checks.append((Verdict.FAIL if over else Verdict.PASS,
                       f"{new}: {name} latency {_ms(measured)} {verb} the limit of {_ms(limit_ms)}"))  # fmt: skip
    if limit_ratio is not None and baseline is not None:
        checks.append(_latency_ratio_check(spec, judged, name, limit_ratio, measured, candidate, baseline))
    return checks


def judged_percentile(
    spec: GateSpec, percentile: str, candidate: WindowStats, baseline: WindowStats | None
) -> str | None:
    """The percentile a window can bear: the one asked for when both sides have ``min_tail_samples``
    answers beyond it, else the highest lower one (p95, then p50) that they have; None if none."""
    order = [p for p in ("p99", "p95", "p50") if int(p[1:]) <= int(percentile[1:])]
    for candidate_percentile in order:
        needed = tail_samples_needed(candidate_percentile, spec.min_tail_samples)
        sides = [candidate] + ([baseline] if baseline is not None else [])
        if all(s.answered >= needed and getattr(s, f"{candidate_percentile}_ms") is not None for s in sides):
            return candidate_percentile
    return None


def _latency_ratio_check(
    spec: GateSpec,
    percentile: str,
    name: str,
    limit: float,
    measured: float,
    candidate: WindowStats,
    baseline: WindowStats,
) -> tuple[Verdict, str]:
    """Slower than the current deployment by the ratio *and* by the floor."""
    new = candidate.deployment or "new deployment"
    old = baseline.deployment or "current deployment"
    base = getattr(baseline, f"{percentile}_ms")
    if baseline.requests < spec.min_requests or not base:
        return Verdict.INCONCLUSIVE, f"{new}: {old} has no {percentile} latency from {spec.min_requests}+ requests"
    ratio, slower = measured / base, measured - base
    compared = f"{new}: {name} latency {_ms(measured)} is {ratio:.2f}× {old}'s {_ms(base)} ({slower:+.1f} ms)"
    if not _above(ratio, limit):
        return Verdict.PASS, f"{compared}, within the limit of {limit:g}×"
    if not _above(slower, spec.latency_ratio_floor_ms):
        return Verdict.PASS, (
            f"{compared}: above {limit:g}× but not more than {_ms(spec.latency_ratio_floor_ms)} slower, "
            "so not a regression (rule: ratio above the limit and difference above the floor)"
        )
    return Verdict.FAIL, (
        f"{compared}: above {limit:g}× and more than {_ms(spec.latency_ratio_floor_ms)} slower "
        "(rule: ratio above the limit and difference above the floor)"
    )


def tail_samples_needed(percentile: str, beyond: int) -> int:
    """Answers a window needs for ``beyond`` of them to lie past the percentile: 1,000 for 10 past p99."""
    fraction_beyond = 1 - int(percentile.removeprefix("p")) / 100
    return math.ceil(beyond / fraction_beyond - 1e-9)


def _has_relative_limits(spec: GateSpec) -> bool:
    return any(v is not None for v in (spec.max_error_rate_increase, spec.max_p95_ratio, spec.max_p99_ratio))


def _known_keys(cls: type, data: Mapping[str, Any], what: str) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {', '.join(unknown)}; known keys are {', '.join(sorted(known))}")
    return dict(data)


def _above(value: float, limit: float) -> bool:
    """value > limit, ignoring float noise: 25/1000 - 180/9000 is exactly the allowed +0.005."""
    return value > limit + 1e-9 * max(1.0, abs(limit))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _pct(rate: float) -> str:
    return f"{rate * 100:.2f} %"


def _points(delta: float) -> str:
    return f"{delta * 100:+.2f} points"


def _ms(value: float) -> str:
    return f"{value:.1f} ms"
