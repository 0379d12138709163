"""Open-loop HTTP load generator and latency statistics (no Airflow imports).

Constant-arrival-rate load with latency measured from each request's intended send
time, recorded in HDR histograms that merge exactly across processes and tasks.
"""

from __future__ import annotations

from deployflow.loadtest.generator import closed_loop, open_loop
from deployflow.loadtest.histogram import LatencyHistogram, Percentiles
from deployflow.loadtest.result import CLOSED_LOOP, OPEN_LOOP, GeneratorLag, LoadResult, merge_results
from deployflow.loadtest.runner import run_closed_loop, run_open_loop
from deployflow.loadtest.schedule import Schedule, Step
from deployflow.loadtest.spec import RequestSpec

__all__ = [
    "CLOSED_LOOP",
    "OPEN_LOOP",
    "GeneratorLag",
    "LatencyHistogram",
    "LoadResult",
    "Percentiles",
    "RequestSpec",
    "Schedule",
    "Step",
    "closed_loop",
    "merge_results",
    "open_loop",
    "run_closed_loop",
    "run_open_loop",
]
