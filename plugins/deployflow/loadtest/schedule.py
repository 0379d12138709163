"""Arrival schedules: when each request is meant to be sent, independent of the server.

An open-loop test is defined by its schedule alone, so latency can be measured from
the intended send time and a slow server cannot slow the arrivals down.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from deployflow.loadtest.guard import MAX_DURATION_S, MAX_RATE, require_at_most


@dataclass(frozen=True)
class Step:
    """A stretch of constant arrival rate: `rate` requests per second for `duration_s`."""

    rate: float
    duration_s: float

    def __post_init__(self) -> None:
        if not (self.rate >= 0 and math.isfinite(self.rate)):
            raise ValueError(f"step rate must be a finite number >= 0, got {self.rate!r}")
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError(f"step duration must be a finite number > 0, got {self.duration_s!r}")
        require_at_most("step rate (requests/s)", self.rate, MAX_RATE)

    @property
    def count(self) -> int:
        """Sends at offsets j / rate that fall strictly inside the step."""
        # The epsilon keeps 100 rps x 0.3 s at 30 sends despite float rounding.
        return max(0, math.ceil(self.rate * self.duration_s - 1e-9))


@dataclass(frozen=True)
class Schedule:
    """A sequence of constant-rate steps; a plain constant-rate test is one step."""

    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a schedule needs at least one step")
        require_at_most("schedule duration (s)", self.duration_s, MAX_DURATION_S)

    @classmethod
    def constant(cls, rate: float, duration_s: float) -> Schedule:
        """`rate` requests per second for `duration_s` seconds."""
        return cls((Step(rate, duration_s),))

    @classmethod
    def stepped(cls, steps: Iterable[tuple[float, float] | Step]) -> Schedule:
        """Steps given as (rate, duration_s) pairs, run one after another."""
        return cls(tuple(s if isinstance(s, Step) else Step(*s) for s in steps))

    @classmethod
    def ramp(cls, start_rate: float, end_rate: float, duration_s: float, steps: int = 10) -> Schedule:
        """A linear ramp from `start_rate` to `end_rate`, approximated by equal-length steps."""
        if steps < 1:
            raise ValueError(f"a ramp needs at least one step, got {steps}")
        if steps == 1:
            return cls.constant(end_rate, duration_s)
        each = duration_s / steps
        delta = (end_rate - start_rate) / (steps - 1)
        return cls(tuple(Step(start_rate + i * delta, each) for i in range(steps)))

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.steps)

    @property
    def total_requests(self) -> int:
        return sum(s.count for s in self.steps)

    @property
    def mean_rate(self) -> float:
        return self.total_requests / self.duration_s

    def split_at(self, seconds: float) -> tuple[Schedule, Schedule | None]:
        """The first ``seconds`` of the schedule (up to the next send) and the rest (None when nothing
        is left): run one after the other, they send what the schedule sends, when it sends it."""
        if seconds >= self.duration_s:
            return self, None
        if seconds <= 0:
            raise ValueError(f"a schedule splits after a positive time, got {seconds!r}")
        first: list[Step] = []
        rest: list[Step] = []
        elapsed = 0.0
        for step in self.steps:
            if elapsed + step.duration_s <= seconds:
                first.append(step)
            elif elapsed >= seconds:
                rest.append(step)
            else:  # cut just after a send, so both parts send exactly what the step did, when it did
                cut = seconds - elapsed
                if step.rate > 0:
                    cut = math.ceil(step.rate * cut - 1e-9) / step.rate
                if cut > 0:
                    first.append(Step(step.rate, min(cut, step.duration_s)))
                if step.duration_s - cut > 1e-9:
                    rest.append(Step(step.rate, step.duration_s - cut))
            elapsed += step.duration_s
        if not rest:
            return Schedule(tuple(first)), None
        return Schedule(tuple(first)), Schedule(tuple(rest))

    def shard_size(self, shard: int = 0, shards: int = 1) -> int:
        """How many sends `offsets(shard, shards)` yields."""
        _check_shard(shard, shards)
        total = self.total_requests
        return total // shards + (1 if shard < total % shards else 0)

    def offsets(self, shard: int = 0, shards: int = 1) -> Iterator[float]:
        """Intended send times in seconds from the start, for one of `shards` workers.

        Worker k takes every shards-th send starting at the k-th, so the workers'
        sends interleave and their union is exactly the whole schedule.
        """
        _check_shard(shard, shards)
        index = 0
        step_start = 0.0
        for step in self.steps:
            count = step.count
            if count:
                interval = 1.0 / step.rate
                # First j in this step whose global index belongs to this shard.
                for j in range((shard - index) % shards, count, shards):
                    yield step_start + j * interval
            index += count
            step_start += step.duration_s


def _check_shard(shard: int, shards: int) -> None:
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard must be in [0, {shards}), got {shard}")
