"""Open-loop HTTP load generator and latency statistics (no Airflow imports).

Constant-arrival-rate load with latency measured from each request's intended send
time, recorded in HDR histograms that merge exactly across processes and tasks.
"""

from __future__ import annotations

from deployflow.loadtest.generator import closed_loop, open_loop
from deployflow.loadtest.guard import MAX_CONNECTIONS, MAX_DURATION_S, MAX_RATE, MAX_WORKERS
from deployflow.loadtest.histogram import LatencyHistogram, Percentiles
from deployflow.loadtest.result import CLOSED_LOOP, OPEN_LOOP, GeneratorLag, LoadResult, chain_results, merge_results
from deployflow.loadtest.runner import run_closed_loop, run_open_loop, run_open_loop_refreshing
from deployflow.loadtest.schedule import Schedule, Step
from deployflow.loadtest.slo import SLO, Check, Verdict, evaluate_slo
from deployflow.loadtest.spec import RequestSpec

__all__ = [
    "CLOSED_LOOP",
    "MAX_CONNECTIONS",
    "MAX_DURATION_S",
    "MAX_RATE",
    "MAX_WORKERS",
    "OPEN_LOOP",
    "SLO",
    "Check",
    "GeneratorLag",
    "LatencyHistogram",
    "LoadResult",
    "Percentiles",
    "RequestSpec",
    "Schedule",
    "Step",
    "Verdict",
    "chain_results",
    "closed_loop",
    "evaluate_slo",
    "merge_results",
    "open_loop",
    "run_closed_loop",
    "run_open_loop",
    "run_open_loop_refreshing",
]
