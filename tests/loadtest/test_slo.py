"""Stress-test verdicts: pure judgements of a LoadResult against an SLO."""

from __future__ import annotations

import json

import pytest

from deployflow.loadtest import CLOSED_LOOP, SLO, GeneratorLag, evaluate_slo
from tests.loadtest.support import make_result

# 100 successful requests: 1..100 ms, so p95 is 95 ms and p99 is 99 ms.
RAMP_MS = [float(v) for v in range(1, 101)]


def test_a_result_within_every_objective_passes_and_says_why() -> None:
    verdict = evaluate_slo(SLO(latency_ms=120), make_result(RAMP_MS))

    assert verdict.passed
    assert [c.name for c in verdict.checks] == ["p99_ms", "error_percent"]
    assert verdict.reasons[0] == "p99 latency 99.0 ms is within the 120 ms objective"
    assert verdict.notes == ()


def test_the_chosen_percentile_is_the_one_judged() -> None:
    result = make_result(RAMP_MS)

    p95 = evaluate_slo(SLO(latency_ms=97, percentile=95), result)
    p99 = evaluate_slo(SLO(latency_ms=97, percentile=99), result)

    assert p95.passed
    assert not p99.passed
    assert p99.reasons == ["p99 latency 99.0 ms is over the 97 ms objective"]
    assert p99.checks[0].measured == pytest.approx(99.0, rel=1e-3)


def test_too_many_errors_fail_and_the_reason_names_their_classes() -> None:
    result = make_result(RAMP_MS, errors={"http_500": 3, "timeout": 2})  # 5 of 105

    verdict = evaluate_slo(SLO(latency_ms=500, max_error_percent=2.0), result)

    assert not verdict.passed
    assert verdict.reasons == ["error rate 4.76 % (http_500 3, timeout 2) is over the 2 % objective"]
    assert evaluate_slo(SLO(latency_ms=500, max_error_percent=5.0), result).passed


def test_an_achieved_rate_below_the_asked_fraction_fails() -> None:
    result = make_result(RAMP_MS, duration_s=1.0, requested_rate=125.0)  # 100 of 125 per s

    strict = evaluate_slo(SLO(latency_ms=500, min_rate_fraction=0.9), result)
    lenient = evaluate_slo(SLO(latency_ms=500, min_rate_fraction=0.75), result)

    assert not strict.passed
    assert strict.reasons == ["achieved 100.0 of 125.0 requests/s (80%), which misses the 90% objective"]
    assert lenient.passed


def test_a_generator_that_fell_behind_is_noted_on_the_verdict() -> None:
    lag = GeneratorLag(late_sends=50, max_lag_ms=400.0, late_dispatches=50)
    result = make_result(RAMP_MS, lag=lag)

    verdict = evaluate_slo(SLO(latency_ms=500), result)

    assert verdict.passed  # the objectives held; the note says the load was not all offered
    assert verdict.notes and "fell behind" in verdict.notes[0]


def test_no_settled_request_and_no_success_both_fail() -> None:
    nothing = evaluate_slo(SLO(latency_ms=500), make_result([]))
    all_failed = evaluate_slo(SLO(latency_ms=500, max_error_percent=100), make_result([], errors={"connect": 10}))

    assert not nothing.passed and nothing.reasons == ["no request was settled: there is nothing to judge"]
    assert not all_failed.passed
    assert all_failed.reasons == ["p99 latency is unknown: no request succeeded"]


def test_verdict_is_json_ready_for_xcom() -> None:
    verdict = evaluate_slo(SLO(latency_ms=50, min_rate_fraction=0.5), make_result(RAMP_MS, errors={"timeout": 1}))

    data = json.loads(json.dumps(verdict.to_dict()))

    assert data["passed"] is False
    assert data["reasons"] == ["p99 latency 99.0 ms is over the 50 ms objective"]
    assert [c["passed"] for c in data["checks"]] == [False, True, True]
    assert data["checks"][0] == {
        "name": "p99_ms",
        "measured": pytest.approx(99.0, rel=1e-3),
        "limit": 50,
        "passed": False,
        "reason": "p99 latency 99.0 ms is over the 50 ms objective",
    }


def test_a_rate_objective_on_a_closed_loop_result_is_refused() -> None:
    with pytest.raises(ValueError, match="closed-loop result has no requested rate"):
        evaluate_slo(SLO(latency_ms=50, min_rate_fraction=0.5), make_result(RAMP_MS, mode=CLOSED_LOOP))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"latency_ms": 0},
        {"latency_ms": float("nan")},
        {"latency_ms": 10, "percentile": 100},
        {"latency_ms": 10, "max_error_percent": -1},
        {"latency_ms": 10, "min_rate_fraction": 1.5},
    ],
)
def test_invalid_objectives_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="SLO"):
        SLO(**kwargs)
