"""The profile report: JSON with the fields v1 `Model.profile` users know, plus cost, and an HTML page.

v1 fields keep v1's meaning: `requestedQueriesPerSecond` is the rate the load step asked
for and `measuredQueriesPerSecond` the rate it achieved, both at the highest rate that
met the SLO; latencies are that step's, in ms. The target rate is `targetQueriesPerSecond`.
"""

from __future__ import annotations

import html
from dataclasses import asdict
from typing import Any

from deployflow.loadtest import SLO
from deployflow.profiling.candidates import PriceTable
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


def _v1_fields(plan: CandidatePlan) -> dict[str, Any]:
    step = plan.sustainable_step
    if step is None:
        return {
            "latencyPercentile50InMs": None,
            "latencyPercentile90InMs": None,
            "latencyPercentile95InMs": None,
            "latencyPercentile99InMs": None,
            "measuredQueriesPerSecond": None,
            "requestedQueriesPerSecond": None,
            "successRate": None,
            "cpuUsed": None,
            "memoryUsedInGB": None,
        }
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
