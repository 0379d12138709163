"""A real load step for the search: open-loop load at one rate against one endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from deployflow.loadtest import RequestSpec, Schedule, run_open_loop_refreshing
from deployflow.profiling.search import StepMeasurement

if TYPE_CHECKING:
    from deployflow.loadtest.split import SplitOutcome

Usage = Callable[[], tuple[float | None, float | None]]  # (cpu cores, memory GB) used during the last step
# A step split over several parts: (rate, duration_s, settle_s, request fn) -> the merged outcome, or None when
# the rate is one part's to send (see deployflow.profiling.split.SplitLeader.measure_step).
SplitStep = Callable[[float, float, float, Callable[[], RequestSpec]], "SplitOutcome | None"]


def open_loop_measure(
    request: RequestSpec | Callable[[], tuple[RequestSpec, float | None]],
    *,
    step_duration_s: float = 5.0,
    workers: int = 1,
    settle_s: float = 0.0,
    usage: Usage | None = None,
    split: SplitStep | None = None,
) -> Callable[[float], StepMeasurement]:
    """A `measure` that offers `rate` requests/s for `step_duration_s`, then waits `settle_s`.

    The pause lets a server drain the queue an overloaded step left, so the next step
    starts from idle; `usage`, when given, reads the server's cpu and memory after each step.
    `request` may be a function giving the request and until when its headers hold (see
    `run_open_loop_refreshing`): it is asked before every step, so a long search outlives a token.
    `split`, when given, sends the steps too fast for one generator over several parts and merges them.
    """
    request_for = request if callable(request) else lambda: (request, None)

    def measure(rate: float) -> StepMeasurement:
        outcome = split(rate, step_duration_s, settle_s, lambda: request_for()[0]) if split else None
        if outcome is None:
            result = run_open_loop_refreshing(request_for, Schedule.constant(rate, step_duration_s), workers=workers)
        else:
            result = outcome.result
        cpu, memory = usage() if usage else (None, None)
        if settle_s:
            time.sleep(settle_s)
        report = None if outcome is None else outcome.to_dict() | {"histograms": result.to_dict()["histograms"]}
        return StepMeasurement(result, cpu_used=cpu, memory_used_gb=memory, split=report)

    return measure
