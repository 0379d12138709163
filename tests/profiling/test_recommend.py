"""Choosing the cheapest configuration and instance count that serves the target with headroom."""

from __future__ import annotations

import pytest

from deployflow.loadtest import SLO
from deployflow.platform.specs import Resources
from deployflow.profiling import Candidate, PriceTable, SearchResult, find_max_sustainable_rate, recommend
from tests.profiling.support import cliff_server, flat_server

PRICES = PriceTable(per_cpu_core_hour=0.05, per_gb_hour=0.0, instance_types={"same-a": 1.0, "same-b": 1.0})
SLO_50MS = SLO(latency_ms=50)


def sustaining(rate: float) -> SearchResult:
    """A search whose highest passing step is exactly `rate` (the server holds more)."""
    return find_max_sustainable_rate(cliff_server(10 * rate), SLO_50MS, start_rate=rate, max_rate=rate)


def failing() -> SearchResult:
    return find_max_sustainable_rate(cliff_server(1.0), SLO_50MS, start_rate=50, max_rate=100)


def cpu(name: str, cores: float, instance_count: int = 1) -> Candidate:
    return Candidate(name, Resources(cpu=cores, memory_gb=1), instance_count=instance_count)


def test_the_cheapest_plan_wins_even_when_its_instances_cost_more() -> None:
    small, big = cpu("small", 1), cpu("big", 4)  # 0.05/h serving 100/s, 0.20/h serving 500/s

    rec = recommend([(small, sustaining(100)), (big, sustaining(500))], PRICES, target_rate=450, headroom=0.2)

    plans = {p.candidate.name: p for p in rec.plans}
    assert plans["small"].instance_count == 6 and plans["small"].cost_per_hour == pytest.approx(0.30)
    assert plans["big"].instance_count == 2 and plans["big"].cost_per_hour == pytest.approx(0.40)
    assert rec.chosen is not None and rec.chosen.candidate.name == "small"


def test_headroom_adds_instances_and_an_exact_fit_needs_no_extra_one() -> None:
    def instances(headroom: float) -> int | None:
        return (
            recommend([(cpu("c", 1), sustaining(60))], PRICES, target_rate=100, headroom=headroom)
            .plans[0]
            .instance_count
        )

    assert instances(0.0) == 2
    assert instances(0.2) == 2  # 120 / 60 is exactly 2
    assert instances(0.25) == 3


def test_a_pool_tested_with_several_instances_is_planned_per_instance() -> None:
    rec = recommend([(cpu("pair", 1, instance_count=2), sustaining(200))], PRICES, target_rate=250, headroom=0.2)

    assert rec.chosen is not None
    assert rec.chosen.rate_per_instance == pytest.approx(100)
    assert rec.chosen.instance_count == 3


def test_equal_cost_goes_to_fewer_instances() -> None:
    one_big, two_small = cpu("one-big", 2), cpu("two-small", 1)  # both 0.10/h for 100/s

    rec = recommend([(two_small, sustaining(50)), (one_big, sustaining(100))], PRICES, target_rate=100, headroom=0)

    assert rec.chosen is not None and rec.chosen.candidate.name == "one-big"


def test_equal_cost_and_count_goes_to_lower_latency_before_name() -> None:
    slow = Candidate("same-a", Resources(instance_type="same-a"))  # first by name, 30 ms
    fast = Candidate("same-b", Resources(instance_type="same-b"))  # 5 ms
    slow_search = find_max_sustainable_rate(flat_server(30.0), SLO_50MS, start_rate=100, max_rate=100)

    rec = recommend([(slow, slow_search), (fast, sustaining(100))], PRICES, target_rate=80, headroom=0)

    assert [p.cost_per_hour for p in rec.plans] == [1.0, 1.0]
    assert rec.chosen is not None and rec.chosen.candidate.name == "same-b"


def test_a_candidate_meeting_the_slo_at_no_rate_is_reported_not_viable_with_the_reason() -> None:
    rec = recommend([(cpu("tiny", 0.5), failing()), (cpu("ok", 1), sustaining(100))], PRICES, target_rate=50)

    tiny = rec.plans[0]
    assert not tiny.viable and tiny.instance_count is None and tiny.cost_per_hour is None
    assert tiny.reason.startswith("met the SLO at no rate tried: p99 latency")
    assert rec.chosen is not None and rec.chosen.candidate.name == "ok"


def test_no_viable_candidate_means_no_recommendation() -> None:
    rec = recommend([(cpu("tiny", 0.5), failing())], PRICES, target_rate=50)

    assert rec.chosen is None
    assert rec.reason == "no candidate met the SLO at any rate tried"


def test_a_plan_over_the_instance_limit_is_not_viable() -> None:
    rec = recommend([(cpu("c", 1), sustaining(10))], PRICES, target_rate=100, headroom=0, max_instance_count=5)

    assert rec.chosen is None
    assert rec.plans[0].reason == "needs 10 instances at 10.0 requests/s each, over the limit of 5"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_rate": 0}, "target rate must be > 0"),
        ({"target_rate": 10, "headroom": -0.1}, "headroom is a fraction >= 0"),
    ],
)
def test_bad_targets_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recommend([(cpu("c", 1), sustaining(10))], PRICES, **kwargs)  # type: ignore[arg-type]


def test_duplicate_names_and_unpriceable_candidates_are_refused() -> None:
    with pytest.raises(ValueError, match="names must be unique"):
        recommend([(cpu("c", 1), sustaining(10)), (cpu("c", 2), sustaining(10))], PRICES, target_rate=5)
    with pytest.raises(ValueError, match="no price for instance type 'Standard_X'"):
        recommend([(Candidate("x", Resources(instance_type="Standard_X")), sustaining(10))], PRICES, target_rate=5)
