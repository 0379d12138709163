"""The JSON report's fields and the self-contained HTML chart."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from deployflow.loadtest import SLO
from deployflow.platform.specs import Resources
from deployflow.profiling import Candidate, PriceTable, build_report, find_max_sustainable_rate, recommend, render_html
from tests.profiling.support import cliff_server

SLO_50MS = SLO(latency_ms=50)
PRICES = PriceTable(per_cpu_core_hour=0.05, per_gb_hour=0.01, instance_types={"Standard_DS3_v2": 0.29})
V1_FIELDS = {
    "latencyPercentile50InMs",
    "latencyPercentile90InMs",
    "latencyPercentile95InMs",
    "latencyPercentile99InMs",
    "measuredQueriesPerSecond",
    "requestedQueriesPerSecond",
    "successRate",
}
SVG = "{http://www.w3.org/2000/svg}"


def profiled(capacity: float) -> Any:
    return find_max_sustainable_rate(cliff_server(capacity), SLO_50MS, start_rate=20, max_rate=5000)


@pytest.fixture
def report() -> dict[str, Any]:
    profiles = [
        (Candidate("1cpu", Resources(cpu=1, memory_gb=2)), profiled(120)),
        (Candidate("2cpu", Resources(cpu=2, memory_gb=4), worker_count=2), profiled(260)),
        (Candidate('ds3 <&> "quoted"', Resources(instance_type="Standard_DS3_v2")), profiled(400)),
        (Candidate("tiny", Resources(cpu=0.25, memory_gb=0.5)), profiled(5)),
    ]
    rec = recommend(profiles, PRICES, target_rate=200, headroom=0.2)
    return build_report(rec, SLO_50MS, PRICES, wall_time_s=12.5)


def test_the_recommendation_carries_the_v1_fields_and_ours(report: dict[str, Any]) -> None:
    top = report["recommendation"]

    assert V1_FIELDS <= set(top)
    # 240/s planned: 1 x 2cpu (0.14/h) beats 3 x 1cpu (3 x 0.07/h) and 1 x DS3 (0.29/h).
    assert top["recommendedConfig"] == "2cpu" and top["recommendedWorkerCount"] == 2
    assert top["recommendedCpu"] == 2 and top["recommendedMemoryInGB"] == 4
    assert top["recommendedInstanceCount"] == 1
    assert top["costPerHour"] == pytest.approx(0.14)
    assert top["latencyPercentile99InMs"] == pytest.approx(5.0, rel=1e-3)
    assert top["successRate"] == 1.0
    assert 260 / 1.05 <= top["requestedQueriesPerSecond"] <= 260
    assert top["measuredQueriesPerSecond"] == pytest.approx(top["requestedQueriesPerSecond"], rel=0.01)


def test_the_report_records_inputs_wall_time_and_every_step(report: dict[str, Any]) -> None:
    assert report["slo"]["latency_ms"] == 50 and report["slo"]["percentile"] == 99
    assert report["targetQueriesPerSecond"] == 200 and report["headroom"] == 0.2
    assert report["plannedQueriesPerSecond"] == 240
    assert report["wallTimeSeconds"] == 12.5
    assert report["loadSteps"] == sum(len(c["steps"]) for c in report["candidates"])
    assert [c["name"] for c in report["candidates"]][:2] == ["1cpu", "2cpu"]
    for candidate in report["candidates"]:
        assert V1_FIELDS <= set(candidate)
        for step in candidate["steps"]:
            assert {"requestedQueriesPerSecond", "measuredQueriesPerSecond", "successRate", "passed"} <= set(step)
            assert {"p50", "p90", "p95", "p99"} <= set(step["latencyMs"])
    assert json.loads(json.dumps(report)) == report


def test_a_candidate_that_meets_the_slo_at_no_rate_is_in_the_report_with_its_reason(report: dict[str, Any]) -> None:
    tiny = report["candidates"][-1]

    assert not tiny["viable"]
    assert tiny["maxSustainableQueriesPerSecond"] is None and tiny["latencyPercentile99InMs"] is None
    assert tiny["reason"].startswith("met the SLO at no rate tried")


def parse(page: str) -> ET.Element:
    """The page is well-formed XHTML: parse it whole, as XML, after the doctype."""
    assert page.startswith("<!DOCTYPE html>\n")
    return ET.fromstring(page.split("\n", 1)[1])


def test_the_html_has_one_p99_line_per_candidate_the_slo_line_and_a_table(report: dict[str, Any]) -> None:
    root = parse(render_html(report))

    lines = root.findall(f".//{SVG}polyline[@class='p99']")
    assert [p.get("data-candidate") for p in lines] == [c["name"] for c in report["candidates"]]
    assert len(root.findall(f".//{SVG}polyline[@class='p50']")) == len(report["candidates"])
    assert len(root.findall(f".//{SVG}line[@class='slo']")) == 1
    assert len(root.findall(".//tbody/tr")) == len(report["candidates"])
    viable_points = lines[0].get("points", "").split()
    assert len(viable_points) == len(report["candidates"][0]["steps"])


def test_the_html_is_self_contained_and_escapes_names(report: dict[str, Any]) -> None:
    page = render_html(report)
    root = parse(page)

    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert 'ds3 <&> "quoted"' in "".join(root.itertext())
    assert "Recommended: 2cpu x 1" in page


def test_a_report_with_no_viable_candidate_still_renders() -> None:
    rec = recommend([(Candidate("tiny", Resources(cpu=1, memory_gb=1)), profiled(5))], PRICES, target_rate=100)
    report = build_report(rec, SLO_50MS, PRICES, wall_time_s=1.0)

    assert report["recommendation"] is None
    root = parse(render_html(report))
    assert len(root.findall(f".//{SVG}polyline[@class='p99']")) == 1
    assert "No configuration met the SLO" in render_html(report)


def test_a_profile_that_could_not_measure_assumes_the_cheapest_declared_candidate_and_says_so() -> None:
    from deployflow.profiling.report import assumed_report

    candidates = [
        Candidate("ds3", Resources(instance_type="Standard_DS3_v2")),  # 0.29 /h
        Candidate("half-a", Resources(cpu=0.5, memory_gb=1), instance_count=2),  # 2 x 0.035 /h
        Candidate("half-b", Resources(cpu=0.5, memory_gb=1), instance_count=2),  # the same price, declared later
        Candidate("big", Resources(cpu=4, memory_gb=8)),
    ]
    report = assumed_report(
        candidates, PRICES, SLO_50MS, target_rate=100, headroom=0.2, wall_time_s=0.5, why="not judged (dry run)"
    )

    chosen = report["recommendation"]
    assert chosen["recommendedConfig"] == "half-a" and chosen["recommendedInstanceCount"] == 2
    assert chosen["costPerHour"] == pytest.approx(0.07) and chosen["assumed"] is True
    assert all(chosen[field] is None for field in V1_FIELDS)  # nothing was measured
    assert report["reason"].startswith("not judged (dry run): assumed the cheapest declared candidate, half-a x 2")
    assert report["loadSteps"] == 0 and [c["viable"] for c in report["candidates"]] == [None] * 4
    assert "Recommended: half-a x 2" in render_html(report)  # the chart renders with no points
