"""Profiling: the highest rate each candidate configuration sustains within an SLO, and the cheapest plan.

Pure logic (no Airflow imports, no platform calls): load steps are injected as `measure`.
"""

from __future__ import annotations

from deployflow.profiling.candidates import Candidate, PriceTable
from deployflow.profiling.measure import open_loop_measure
from deployflow.profiling.recommend import CandidatePlan, Recommendation, plan_candidate, recommend
from deployflow.profiling.report import build_report, render_html
from deployflow.profiling.search import SearchResult, SearchStep, StepMeasurement, find_max_sustainable_rate

__all__ = [
    "Candidate",
    "CandidatePlan",
    "PriceTable",
    "Recommendation",
    "SearchResult",
    "SearchStep",
    "StepMeasurement",
    "build_report",
    "find_max_sustainable_rate",
    "open_loop_measure",
    "plan_candidate",
    "recommend",
    "render_html",
]
