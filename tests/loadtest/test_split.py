"""A load split into parts (mapped tasks) and merged back: the split covers the schedule, the merge is exact."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from deployflow.loadtest import RequestSpec, Schedule
from deployflow.loadtest.split import (
    LoadPart,
    PartResult,
    merge_parts,
    parts_needed,
    plan_parts,
    run_part,
)
from tests.loadtest.support import histogram_of, lognormal_ms, make_result

StartServer = Callable[..., Any]


def part_result(index: int, parts: int, values_ms: list[float], **kwargs: Any) -> PartResult:
    part = LoadPart(index, parts, start_at=1_000_000.0, planned_at=999_990.0)
    late_ms, gap_ms = kwargs.get("late_ms", 0.0), kwargs.get("gap_ms", 10_000.0)
    return PartResult(part, make_result(values_ms), late_ms, gap_ms, "w", ended_at=kwargs.get("ended_at"))


def through_xcom(part: PartResult) -> dict[str, Any]:
    """What a mapped task hands the merge: JSON, as XCom stores it."""
    return json.loads(json.dumps(part.to_dict()))


@pytest.mark.parametrize(
    ("schedule", "max_rate", "parts"),
    [
        (Schedule.constant(5000, 10), 2000, 3),
        (Schedule.constant(4000, 10), 2000, 2),  # exactly at the limit: no third part
        (Schedule.constant(50, 10), 2000, 1),
        (Schedule.ramp(100, 9000, 10, steps=5), 2000, 5),  # the peak step decides
    ],
)
def test_a_load_is_split_into_as_many_parts_as_its_peak_rate_needs(schedule, max_rate, parts) -> None:
    assert parts_needed(schedule, max_rate) == parts


def test_a_split_refuses_a_limit_that_is_no_rate_or_too_many_parts() -> None:
    with pytest.raises(ValueError, match="max_rate_per_worker must be"):
        parts_needed(Schedule.constant(100, 1), 0)
    with pytest.raises(ValueError, match="load parts .* exceeds"):
        parts_needed(Schedule.constant(100_000, 1), 10)


def test_every_part_starts_at_one_moment_and_the_parts_together_are_the_whole_schedule() -> None:
    schedule = Schedule.stepped([(300, 1.0), (700, 0.5)])
    parts = plan_parts(schedule, 250, lead_s=12.0, clock=lambda: 5000.0)

    assert [p.index for p in parts] == [0, 1, 2]
    assert {(p.start_at, p.planned_at, p.parts) for p in parts} == {(5012.0, 5000.0, 3)}
    union = sorted(t for p in parts for t in schedule.offsets(p.index, p.parts))
    assert union == list(schedule.offsets())
    assert [LoadPart.from_dict(json.loads(json.dumps(p.to_dict()))) for p in parts] == parts


def test_a_load_of_one_part_starts_when_it_is_ready_and_waits_for_no_one(stub_server: StartServer) -> None:
    server = stub_server()
    schedule = Schedule.constant(50, 0.5)
    (part,) = plan_parts(schedule, 1000, lead_s=30.0, clock=lambda: time.time() - 60)

    started = time.monotonic()
    outcome = merge_parts([through_xcom(run_part(RequestSpec(server.url, body=b"{}"), schedule, part))])

    assert part.start_at is None and time.monotonic() - started < 5
    assert outcome.late_parts == [] and outcome.result.ok == server.requests == 25
    with pytest.raises(ValueError, match="need a shared start_at"):
        LoadPart(0, 2, None, 0.0)


def test_merged_histograms_equal_the_histogram_of_the_union_of_every_parts_samples() -> None:
    samples = [lognormal_ms(seed, n) for seed, n in ((1, 3000), (2, 1700), (3, 2500))]
    parts = [part_result(i, 3, values) for i, values in enumerate(samples)]

    outcome = merge_parts(through_xcom(p) for p in reversed(parts))

    union = [v for values in samples for v in values]
    assert outcome.result.latency == histogram_of(union)  # bucket for bucket
    assert outcome.result.server_time == histogram_of([v / 2 for v in union])
    assert outcome.result.latency_ms.p99 == histogram_of(union).percentiles().p99
    assert outcome.result.ok == outcome.result.scheduled == len(union)
    assert outcome.result.requested_rate == pytest.approx(len(union) / 10.0)
    assert outcome.result.workers == 3
    assert [p.part.index for p in outcome.parts] == [0, 1, 2]
    assert outcome.notes() == []


def test_a_merge_refuses_parts_that_do_not_make_up_one_load() -> None:
    a, b, c = (part_result(i, 3, lognormal_ms(i, 10)) for i in range(3))
    with pytest.raises(ValueError, match=r"missing \[1\], repeated \[\]"):
        merge_parts([a, c])
    with pytest.raises(ValueError, match=r"missing \[1\], repeated \[2\]"):
        merge_parts([a, c, c])
    other_plan = PartResult(LoadPart(1, 3, 2_000_000.0, 1_999_990.0), b.result, 0.0, 0.0, "w")
    with pytest.raises(ValueError, match="different plans"):
        merge_parts([a, other_plan, c])
    with pytest.raises(ValueError, match="missing field 'result'"):
        merge_parts([{k: v for k, v in a.to_dict().items() if k != "result"}])


def test_late_starters_and_clocks_behind_the_planners_are_named() -> None:
    parts = [
        part_result(0, 3, lognormal_ms(0, 10), late_ms=12.0),
        part_result(1, 3, lognormal_ms(1, 10), late_ms=140.0),
        part_result(2, 3, lognormal_ms(2, 10), gap_ms=-900.0),
    ]

    outcome = merge_parts(parts, tolerance_ms=50)

    assert [p.part.index for p in outcome.late_parts] == [1]
    assert [p.part.index for p in outcome.clock_behind_parts] == [2]
    notes = " | ".join(outcome.notes())
    assert "part 1 of 3 (on w) started 140 ms late" in notes
    assert "runs at least 900 ms behind the planner's" in notes
    assert outcome.to_dict()["late_parts"] == [1] and outcome.to_dict()["clock_behind_parts"] == [2]


def test_a_part_whose_clock_runs_ahead_of_the_mergers_is_named_from_its_end_time() -> None:
    """Every part ended before the merge began: a part that says it ended after it has a clock ahead."""
    merging_at = 1_000_020.0
    parts = [
        part_result(0, 3, lognormal_ms(0, 10), ended_at=merging_at - 0.5),  # ended half a second before
        part_result(1, 3, lognormal_ms(1, 10), ended_at=merging_at + 0.03),  # within the tolerance
        part_result(2, 3, lognormal_ms(2, 10), ended_at=merging_at + 1.2),  # 1.2 s in the merger's future
    ]

    outcome = merge_parts([through_xcom(p) for p in parts], tolerance_ms=50, clock=lambda: merging_at)

    assert [p.part.index for p in outcome.clock_ahead_parts] == [2]
    assert outcome.clock_behind_parts == [] and outcome.late_parts == []
    (note,) = outcome.notes()
    assert "load part 2 (on w) runs at least 1200 ms ahead of the merger's" in note
    split = outcome.to_dict()
    assert split["clock_ahead_parts"] == [2]
    assert [p["clock_ahead_ms"] for p in split["by_part"]] == [-500.0, pytest.approx(30.0, abs=0.01), 1200.0]


def test_a_part_that_gave_no_end_time_is_not_judged_ahead() -> None:
    old = {k: v for k, v in through_xcom(part_result(0, 1, lognormal_ms(0, 10))).items() if k != "ended_at"}

    outcome = merge_parts([old], clock=lambda: 0.0)  # any part's end is far "ahead" of a clock at 1970

    assert outcome.clock_ahead_parts == [] and outcome.to_dict()["by_part"][0]["clock_ahead_ms"] is None


def test_two_parts_started_together_send_the_whole_schedule_once(stub_server: StartServer) -> None:
    server = stub_server()
    request, schedule = RequestSpec(server.url, body=b"{}"), Schedule.constant(300, 1.5)
    parts = plan_parts(schedule, 200, lead_s=0.5)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: run_part(request, schedule, p), parts))
    outcome = merge_parts(through_xcom(r) for r in results)

    assert len(parts) == 2 and outcome.notes() == []
    assert [r.result.scheduled for r in results] == [225, 225]
    assert outcome.result.ok == server.requests == 450
    assert outcome.result.latency.count == 450
    assert outcome.result.achieved_rate == pytest.approx(300, rel=0.1)
    assert all(r.start_late_ms == 0 for r in results)
    assert outcome.clock_ahead_parts == [] and all(r.ended_at <= outcome.merged_at for r in results)


def test_a_part_that_starts_late_is_reported_and_its_wait_counts_as_latency(stub_server: StartServer) -> None:
    server = stub_server()
    schedule = Schedule.constant(100, 1.0)
    planned = time.time() - 0.4
    part = LoadPart(0, 1, start_at=planned, planned_at=planned)  # the start was 0.4 s ago

    outcome = merge_parts([run_part(RequestSpec(server.url, body=b"{}"), schedule, part)])

    (late,) = outcome.late_parts
    assert late.start_late_ms >= 400
    assert outcome.result.latency_ms.max >= 300  # the first sends were due before the part began
    assert "started" in outcome.notes()[0] and "late" in outcome.notes()[0]
