"""Arrival schedules: counts, spacing, and shards that interleave into the whole."""

from __future__ import annotations

import pytest

from deployflow.loadtest import Schedule, Step


def test_constant_schedule_sends_rate_times_duration_evenly_spaced() -> None:
    offsets = list(Schedule.constant(100, 0.3).offsets())

    assert len(offsets) == 30
    assert offsets[0] == 0.0
    assert all(b - a == pytest.approx(0.01) for a, b in zip(offsets, offsets[1:], strict=False))
    assert offsets[-1] < 0.3


def test_stepped_schedule_changes_rate_at_each_step_boundary() -> None:
    schedule = Schedule.stepped([(10, 1.0), (20, 0.5), (0, 0.5)])
    offsets = list(schedule.offsets())

    assert schedule.total_requests == len(offsets) == 20
    assert schedule.duration_s == pytest.approx(2.0)
    assert schedule.mean_rate == pytest.approx(10.0)
    assert offsets[9] == pytest.approx(0.9)
    assert offsets[10] == pytest.approx(1.0)  # second step starts on time
    assert offsets[11] - offsets[10] == pytest.approx(0.05)  # at 20/s
    assert offsets[-1] < 1.5  # the 0/s step sends nothing


def test_ramp_rises_linearly_in_equal_steps() -> None:
    schedule = Schedule.ramp(10, 100, duration_s=5.0, steps=4)

    assert [s.rate for s in schedule.steps] == pytest.approx([10, 40, 70, 100])
    assert schedule.duration_s == pytest.approx(5.0)


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_shards_interleave_and_together_are_exactly_the_schedule(shards: int) -> None:
    schedule = Schedule.stepped([(50, 0.5), (120, 0.25), (33, 0.3)])
    whole = list(schedule.offsets())
    parts = [list(schedule.offsets(k, shards)) for k in range(shards)]

    assert sorted(o for part in parts for o in part) == whole
    assert [len(p) for p in parts] == [schedule.shard_size(k, shards) for k in range(shards)]
    # Round-robin: shard k holds the sends with index k, k + shards, ...
    assert parts[1] == whole[1::shards]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Step(-1, 1.0),
        lambda: Step(10, 0.0),
        lambda: Step(float("inf"), 1.0),
        lambda: Schedule.stepped([]),
        lambda: list(Schedule.constant(10, 1).offsets(2, 2)),
    ],
)
def test_invalid_schedules_are_refused(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        build()


def test_split_at_keeps_the_rates_and_the_time() -> None:
    ramp = Schedule.ramp(10, 30, 3.0, steps=3)  # 10, 20, 30 requests/s, one second each

    first, rest = ramp.split_at(1.5)

    assert [(s.rate, s.duration_s) for s in first.steps] == [(10, 1.0), (20, 0.5)]
    assert rest is not None and [(s.rate, s.duration_s) for s in rest.steps] == [(20, 0.5), (30, 1.0)]
    assert first.total_requests + rest.total_requests == ramp.total_requests == 60
    assert ramp.split_at(1.0)[0].steps == ramp.steps[:1] and ramp.split_at(1.0)[1].steps == ramp.steps[1:]
    assert ramp.split_at(3.0) == (ramp, None) and ramp.split_at(10) == (ramp, None)
    with pytest.raises(ValueError, match="positive time"):
        ramp.split_at(0)
