"""The profile report: JSON with the fields v1 `Model.profile` users know, plus cost, and an HTML page.

v1 fields keep v1's meaning: `requestedQueriesPerSecond` is the rate the load step asked
for and `measuredQueriesPerSecond` the rate it achieved, both at the highest rate that
met the SLO; latencies are that step's, in ms. The target rate is `targetQueriesPerSecond`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from deployflow.loadtest import SLO
from deployflow.profiling.candidates import Candidate, PriceTable
from deployflow.profiling.chart import latency_chart
from deployflow.profiling.recommend import CandidatePlan, Recommendation


def build_report(recommendation: Recommendation, slo: SLO, prices: PriceTable, *, wall_time_s: float) -> dict[str, Any]:
    """JSON-ready report: the recommendation, the inputs that shaped it, and every candidate's steps."""
    chosen = recommendation.chosen
    top: dict[str, Any] | None = None
    if chosen is not None:
        top = {
            "recommendedConfig": chosen.candidate.name,
            "recommendedCpu": chosen.candidate.resources.cpu,
            "recommendedMemoryInGB": chosen.candidate.resources.memory_gb,
            "recommendedGpu": chosen.candidate.resources.gpu,
            "recommendedInstanceType": chosen.candidate.resources.instance_type,
            "recommendedWorkerCount": chosen.candidate.worker_count,
            "recommendedInstanceCount": chosen.instance_count,
            **_v1_fields(chosen),
            "costPerHour": _round(chosen.cost_per_hour),
        }
    return {
        "recommendation": top,
        "reason": recommendation.reason,
        "slo": asdict(slo),
        "targetQueriesPerSecond": recommendation.target_rate,
        "headroom": recommendation.headroom,
        "plannedQueriesPerSecond": round(recommendation.planned_rate, 3),
        "currency": prices.currency,
        "wallTimeSeconds": round(wall_time_s, 3),
        "loadSteps": sum(len(p.search.steps) for p in recommendation.plans),
        "candidates": [_candidate(p) for p in recommendation.plans],
    }


def assumed_report(
    candidates: Sequence[Candidate],
    prices: PriceTable,
    slo: SLO,
    *,
    target_rate: float,
    headroom: float,
    wall_time_s: float,
    why: str,
) -> dict[str, Any]:
    """The report of a profile that could not measure (a dry run): the cheapest declared candidate, at
    its own instance count, first in declared order on a tie; every number that needs load is null."""
    costs = [prices.cost_per_hour(c) for c in candidates]
    index = min(range(len(candidates)), key=lambda i: (costs[i], i))
    chosen = candidates[index]
    unmeasured = dict.fromkeys(_V1_FIELDS)
    reason = (
        f"{why}: assumed the cheapest declared candidate, {chosen.name} x {chosen.instance_count} "
        f"({costs[index]:g} {prices.currency}/h); a real profile measures each and may choose another"
    )
    return {
        "recommendation": {
            "recommendedConfig": chosen.name,
            "recommendedCpu": chosen.resources.cpu,
            "recommendedMemoryInGB": chosen.resources.memory_gb,
            "recommendedGpu": chosen.resources.gpu,
            "recommendedInstanceType": chosen.resources.instance_type,
            "recommendedWorkerCount": chosen.worker_count,
            "recommendedInstanceCount": chosen.instance_count,
            **unmeasured,
            "costPerHour": _round(costs[index]),
            "assumed": True,
        },
        "reason": reason,
        "assumed": True,
        "slo": asdict(slo),
        "targetQueriesPerSecond": target_rate,
        "headroom": headroom,
        "plannedQueriesPerSecond": round(target_rate * (1 + headroom), 3),
        "currency": prices.currency,
        "wallTimeSeconds": round(wall_time_s, 3),
        "loadSteps": 0,
        "candidates": [
            {"name": c.name, "resources": c.resources.to_dict(), "workerCount": c.worker_count,
             "instanceCountTested": c.instance_count, "viable": None, "reason": "not measured (dry run)",
             "maxSustainableQueriesPerSecondPerInstance": None, "instanceCount": c.instance_count,
             "costPerHour": _round(cost), **unmeasured, "steps": []}
            for c, cost in zip(candidates, costs, strict=True)
        ],
    }  # fmt: skip


_V1_FIELDS = (
    "latencyPercentile50InMs",
    "latencyPercentile90InMs",
    "latencyPercentile95InMs",
    "latencyPercentile99InMs",
    "measuredQueriesPerSecond",
    "requestedQueriesPerSecond",
    "successRate",
    "cpuUsed",
    "memoryUsedInGB",
)


def _v1_fields(plan: CandidatePlan) -> dict[str, Any]:
    step = plan.sustainable_step
    if step is None:
        return dict.fromkeys(_V1_FIELDS)
    lat = step.latency_ms
    return {
        "latencyPercentile50InMs": lat.p50,
        "latencyPercentile90InMs": lat.p90,
        "latencyPercentile95InMs": lat.p95,
        "latencyPercentile99InMs": lat.p99,
        "measuredQueriesPerSecond": round(step.achieved_rate, 3),
        "requestedQueriesPerSecond": round(step.requested_rate, 3),
        "successRate": round(step.success_rate, 6),
        "cpuUsed": step.cpu_used,
        "memoryUsedInGB": step.memory_used_gb,
    }


def _candidate(plan: CandidatePlan) -> dict[str, Any]:
    c = plan.candidate
    return {
        "name": c.name,
        "resources": c.resources.to_dict(),
        "workerCount": c.worker_count,
        "instanceCountTested": c.instance_count,
        "viable": plan.viable,
        "reason": plan.reason,
        "maxSustainableQueriesPerSecondPerInstance": _round(plan.rate_per_instance),
        "instanceCount": plan.instance_count,
        "costPerHour": _round(plan.cost_per_hour),
        **_v1_fields(plan),
        **plan.search.to_dict(),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page (inline SVG, no scripts, no network): latency against rate, and a table."""
    rec = report.get("recommendation")
    headline = (
        f"Recommended: {rec['recommendedConfig']} x {rec['recommendedInstanceCount']} "
        f"({rec['costPerHour']:g} {report['currency']}/h)"
        if rec
        else "No configuration met the SLO"
    )
    rows = "".join(_row(c) for c in report["candidates"])
    esc = html.escape
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8"/><title>Profile report</title>'
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
        "</head><body>"
        f"<h1>{esc(headline)}</h1><p>{esc(report['reason'])}</p>"
        f"<p>Target {report['targetQueriesPerSecond']:g} requests/s with {report['headroom']:.0%} headroom; "
        f"{report['loadSteps']} load steps in {report['wallTimeSeconds']:.0f} s.</p>"
        f"{latency_chart(report)}"
        "<table><thead><tr><th>config</th><th>max rate/instance</th><th>p50 ms</th><th>p99 ms</th>"
        f"<th>success</th><th>instances</th><th>{esc(report['currency'])}/h</th><th>verdict</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></body></html>\n"
    )


def _row(c: dict[str, Any]) -> str:
    def cell(value: Any, fmt: str = "{:g}") -> str:
        return "<td>-</td>" if value is None else f"<td>{html.escape(fmt.format(value))}</td>"

    return (
        f"<tr><td>{html.escape(c['name'])}</td>"
        f"{cell(c['maxSustainableQueriesPerSecondPerInstance'], '{:.1f}')}"
        f"{cell(c['latencyPercentile50InMs'])}{cell(c['latencyPercentile99InMs'])}"
        f"{cell(c['successRate'], '{:.2%}')}{cell(c['instanceCount'])}{cell(c['costPerHour'], '{:.4g}')}"
        f"<td>{html.escape(c['reason'])}</td></tr>"
    )
