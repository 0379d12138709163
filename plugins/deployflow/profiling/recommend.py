"""The cheapest configuration and instance count that serves a target rate with headroom."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from deployflow.profiling.candidates import Candidate, PriceTable
from deployflow.profiling.search import SearchResult, SearchStep

_CEIL_SLACK = 1e-9  # 120 / 60 computed as 2.0000000001 still needs 2 instances


@dataclass(frozen=True)
class CandidatePlan:
    """How many instances of one candidate the target needs and at what cost, or why it cannot serve it."""

    candidate: Candidate
    search: SearchResult
    viable: bool
    reason: str
    rate_per_instance: float | None = None
    instance_count: int | None = None
    cost_per_hour: float | None = None

    @property
    def sustainable_step(self) -> SearchStep | None:
        return self.search.sustainable_step


@dataclass(frozen=True)
class Recommendation:
    """Every candidate's plan, and the chosen one (None when no candidate is viable)."""

    target_rate: float
    headroom: float
    plans: tuple[CandidatePlan, ...]
    chosen: CandidatePlan | None
    reason: str

    @property
    def planned_rate(self) -> float:
        """The rate capacity is planned for: target x (1 + headroom)."""
        return self.target_rate * (1 + self.headroom)


def plan_candidate(
    candidate: Candidate,
    search: SearchResult,
    prices: PriceTable,
    *,
    target_rate: float,
    headroom: float,
    max_instance_count: int | None = None,
) -> CandidatePlan:
    """Instances = ceil(target x (1 + headroom) / sustainable rate per instance), priced by `prices`."""
    unit_price = prices.instance_price(candidate.resources)  # a candidate that cannot be priced is an input error
    if search.max_sustainable_rate is None:
        first = search.steps[0].reasons[0] if search.steps and search.steps[0].reasons else search.stop_reason
        return CandidatePlan(candidate, search, False, f"met the SLO at no rate tried: {first}")
    per_instance = search.max_sustainable_rate / candidate.instance_count
    needed = max(1, math.ceil(target_rate * (1 + headroom) / per_instance - _CEIL_SLACK))
    if max_instance_count is not None and needed > max_instance_count:
        reason = (
            f"needs {needed} instances at {per_instance:.1f} requests/s each, over the limit of {max_instance_count}"
        )
        return CandidatePlan(candidate, search, False, reason, per_instance, needed, needed * unit_price)
    reason = f"{needed} x {per_instance:.1f} requests/s covers {target_rate * (1 + headroom):.1f} requests/s"
    return CandidatePlan(candidate, search, True, reason, per_instance, needed, needed * unit_price)


def recommend(
    profiles: Sequence[tuple[Candidate, SearchResult]],
    prices: PriceTable,
    *,
    target_rate: float,
    headroom: float = 0.2,
    max_instance_count: int | None = None,
) -> Recommendation:
    """Choose the cheapest viable plan; ties go to fewer instances, then lower p99 latency, then name."""
    if not target_rate > 0:
        raise ValueError(f"target rate must be > 0 requests/s, got {target_rate!r}")
    if not headroom >= 0:
        raise ValueError(f"headroom is a fraction >= 0 (0.2 plans for 120 % of the target), got {headroom!r}")
    if not profiles:
        raise ValueError("no profiled candidates to recommend from")
    names = [c.name for c, _ in profiles]
    if len(set(names)) != len(names):
        raise ValueError(f"profile candidate names must be unique, got {names}")
    plans = tuple(
        plan_candidate(c, s, prices, target_rate=target_rate, headroom=headroom, max_instance_count=max_instance_count)
        for c, s in profiles
    )
    viable = [p for p in plans if p.viable]
    if not viable:
        return Recommendation(target_rate, headroom, plans, None, "no candidate met the SLO at any rate tried")
    chosen = min(viable, key=_rank)
    reason = f"{chosen.candidate.name} is the cheapest viable plan: {chosen.reason}"
    return Recommendation(target_rate, headroom, plans, chosen, reason)


def _rank(plan: CandidatePlan) -> tuple[float, int, float, str]:
    step = plan.sustainable_step
    p99 = step.latency_ms.p99 if step else math.inf
    assert plan.cost_per_hour is not None and plan.instance_count is not None  # viable plans have both
    return (round(plan.cost_per_hour, 9), plan.instance_count, p99, plan.candidate.name)
