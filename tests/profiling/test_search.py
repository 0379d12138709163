"""The adaptive search against synthetic servers of known capacity (pure, no server, no clock)."""

from __future__ import annotations

import math

import pytest

from deployflow.loadtest import SLO, evaluate_slo
from deployflow.profiling import find_max_sustainable_rate
from deployflow.profiling.search import BISECT, RAMP
from tests.profiling.support import SERVICE_MS, cliff_server, queueing_server

SLO_50MS = SLO(latency_ms=50, percentile=99, max_error_percent=1.0)


@pytest.mark.parametrize("capacity", [37.0, 200.0, 237.0, 1000.0, 4321.0])
def test_the_search_converges_within_precision_of_the_capacity(capacity: float) -> None:
    result = find_max_sustainable_rate(
        cliff_server(capacity), SLO_50MS, start_rate=10, max_rate=100_000, precision=0.05, max_steps=30
    )

    assert result.converged
    assert result.max_sustainable_rate is not None and result.lowest_failing_rate is not None
    assert capacity / 1.05 <= result.max_sustainable_rate <= capacity
    assert result.lowest_failing_rate > capacity
    assert (result.lowest_failing_rate - result.max_sustainable_rate) / result.max_sustainable_rate <= 0.05


@pytest.mark.parametrize("capacity", [37.0, 237.0, 4321.0])
def test_the_step_count_is_logarithmic_in_capacity_and_precision(capacity: float) -> None:
    result = find_max_sustainable_rate(
        cliff_server(capacity), SLO_50MS, start_rate=10, max_rate=100_000, precision=0.05, max_steps=30
    )

    ramp = [s for s in result.steps if s.phase == RAMP]
    bisect = [s for s in result.steps if s.phase == BISECT]
    assert len(ramp) == math.ceil(math.log2(capacity / 10)) + 1  # doublings up to the first fail
    assert len(bisect) <= math.ceil(math.log2(1 / 0.05))  # halving a 100 % gap down to 5 %
    assert len(result.steps) <= 15


def test_the_ramp_stops_at_the_first_failure_and_never_loads_past_twice_capacity() -> None:
    calls: list[float] = []
    result = find_max_sustainable_rate(
        cliff_server(300.0, calls), SLO_50MS, start_rate=10, max_rate=100_000, precision=0.05, max_steps=30
    )

    assert max(calls) <= 2 * 300.0
    assert [s.passed for s in result.steps if s.phase == RAMP] == [True] * 5 + [False]  # 10..160 pass, 320 fails
    assert calls == [s.requested_rate for s in result.steps]


def test_max_steps_bounds_the_search_and_says_it_did_not_converge() -> None:
    result = find_max_sustainable_rate(
        cliff_server(237.0), SLO_50MS, start_rate=10, max_rate=100_000, precision=0.01, max_steps=7
    )

    assert len(result.steps) == 7
    assert not result.converged
    assert result.stop_reason == "max_steps reached while bisecting"
    assert result.max_sustainable_rate is not None and result.max_sustainable_rate <= 237.0


def test_a_server_that_holds_the_slo_at_max_rate_stops_there() -> None:
    result = find_max_sustainable_rate(cliff_server(10_000.0), SLO_50MS, start_rate=100, max_rate=1000)

    assert [s.requested_rate for s in result.steps] == [100, 200, 400, 800, 1000]
    assert result.max_sustainable_rate == 1000
    assert result.converged and result.lowest_failing_rate is None


def test_a_server_failing_at_the_start_rate_is_not_viable_and_the_step_says_why() -> None:
    result = find_max_sustainable_rate(cliff_server(5.0), SLO_50MS, start_rate=50, max_rate=1000)

    assert not result.viable
    assert result.sustainable_step is None
    assert len(result.steps) == 1
    assert result.steps[0].reasons[0].startswith("p99 latency")
    assert result.stop_reason == "no step met the SLO"


def test_with_a_min_rate_the_ramp_halves_down_to_find_a_slow_server() -> None:
    result = find_max_sustainable_rate(
        cliff_server(7.0), SLO_50MS, start_rate=50, max_rate=1000, min_rate=1, precision=0.05
    )

    assert [s.requested_rate for s in result.steps][:4] == [50, 25, 12.5, 6.25]
    assert result.max_sustainable_rate is not None and 7.0 / 1.05 <= result.max_sustainable_rate <= 7.0


def test_every_step_records_rate_verdict_latency_and_usage() -> None:
    result = find_max_sustainable_rate(cliff_server(100.0), SLO_50MS, start_rate=40, max_rate=1000)

    first = result.steps[0]
    assert first.requested_rate == 40 and first.achieved_rate == pytest.approx(40)
    assert first.passed and first.success_rate == 1.0
    assert first.latency_ms.p50 == pytest.approx(SERVICE_MS, rel=1e-3)
    assert first.latency_ms.p99 == pytest.approx(SERVICE_MS, rel=1e-3)
    assert first.cpu_used == pytest.approx(0.4)
    failing = next(s for s in result.steps if not s.passed)
    assert failing.success_rate < 1.0 and failing.latency_ms.p99 > 50
    assert result.sustainable_step is not None
    assert result.sustainable_step.requested_rate == result.max_sustainable_rate


def test_the_search_lands_within_10_percent_of_an_exhaustive_fine_sweep() -> None:
    """A smooth queueing server: the SLO boundary is where latency crosses 50 ms, not at capacity."""
    measure = queueing_server(500.0)
    sweep = [rate for rate in range(2, 500, 2) if evaluate_slo(SLO_50MS, measure(rate).result).passed]
    exhaustive = max(sweep)  # 450: 5 ms / (1 - 450/500) = 50 ms
    assert 440 <= exhaustive <= 450

    result = find_max_sustainable_rate(measure, SLO_50MS, start_rate=10, max_rate=10_000)

    assert result.max_sustainable_rate is not None
    assert abs(result.max_sustainable_rate - exhaustive) / exhaustive <= 0.10
    assert len(result.steps) <= 12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_rate": 0, "max_rate": 10}, "start_rate must be > 0"),
        ({"start_rate": 20, "max_rate": 10}, "must be at least start_rate"),
        ({"start_rate": 10, "max_rate": 100, "precision": 0}, "precision is a fraction"),
        ({"start_rate": 10, "max_rate": 100, "max_steps": 0}, "max_steps must be >= 1"),
        ({"start_rate": 10, "max_rate": 100, "min_rate": 20}, "min_rate must be in"),
    ],
)
def test_bad_search_bounds_are_refused_before_any_load(kwargs: dict[str, float], message: str) -> None:
    calls: list[float] = []
    with pytest.raises(ValueError, match=message):
        find_max_sustainable_rate(cliff_server(100.0, calls), SLO_50MS, **kwargs)  # type: ignore[arg-type]
    assert calls == []
