"""One open-loop load split over several workers (Airflow mapped tasks on Celery workers), merged back.

The schedule is cut into interleaved shards (`Schedule.offsets(shard, shards)`): together they are the
whole schedule, each at rate / parts. A start time is fixed once, upstream, on the wall clock; every
part waits for it, runs its shard and returns its result with its HDR histograms (bucket counts, a few
kB). The merge adds the histograms bucket for bucket, so the merged percentiles are those of the union
of every part's requests, and it names the parts that started late or whose clock disagrees with
another's: a part whose clock read earlier at its start than the planner's at planning runs behind; a
part whose clock read later at its end than the merger's when merging (which is after every part
ended) runs ahead.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deployflow.loadtest.generator import (
    DEFAULT_LAG_THRESHOLD_MS,
    DEFAULT_MAX_IN_FLIGHT,
    open_loop,
    run_on_best_loop,
)
from deployflow.loadtest.guard import MAX_WORKERS, require_at_most
from deployflow.loadtest.result import LoadResult, merge_results
from deployflow.loadtest.schedule import Schedule
from deployflow.loadtest.spec import RequestSpec

# One generator process with the stress test's 256 requests in flight held 40,000 requests/s on schedule
# to a server that answers at once, and fell behind at 60,000 (bench/loadgen_vs_wrk.py, this machine
# class); half of what it held leaves room for real answers and a busy worker.
DEFAULT_MAX_RATE_PER_WORKER = 20_000.0
# Between planning and the shared start: time for every mapped part to be queued, picked up by a
# Celery worker and imported. A part that is not ready by then starts late, and is reported.
DEFAULT_START_LEAD_S = 15.0
LATE_START_TOLERANCE_MS = 50.0
MAX_PARTS = MAX_WORKERS


def parts_needed(schedule: Schedule, max_rate_per_worker: float) -> int:
    """How many parts keep every part's peak rate at or under `max_rate_per_worker`."""
    if not (max_rate_per_worker > 0 and math.isfinite(max_rate_per_worker)):
        raise ValueError(f"max_rate_per_worker must be a finite number of requests/s > 0, got {max_rate_per_worker!r}")
    peak = max(step.rate for step in schedule.steps)
    parts = max(1, math.ceil(peak / max_rate_per_worker - 1e-9))
    require_at_most("load parts (peak rate / max_rate_per_worker)", parts, MAX_PARTS)
    return parts


@dataclass(frozen=True)
class LoadPart:
    """Part `index` of `parts` of one load; every part starts its shard at `start_at` (Unix time, s).

    A load of one part has no one to wait for: its `start_at` is None, it starts when it is ready.
    `planned_at` is the planner's clock when the start was fixed: a part whose own clock reads
    earlier than that when it starts runs behind the planner's clock.
    """

    index: int
    parts: int
    start_at: float | None
    planned_at: float

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.parts:
            raise ValueError(f"load part index must be in [0, {self.parts}), got {self.index}")
        if self.start_at is None and self.parts > 1:
            raise ValueError(f"the {self.parts} parts of a split load need a shared start_at")
        if not (math.isfinite(self.planned_at) and (self.start_at is None or math.isfinite(self.start_at))):
            raise ValueError("a load part's start_at and planned_at must be Unix times in seconds")

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "parts": self.parts, "start_at": self.start_at, "planned_at": self.planned_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadPart:
        try:
            start_at = None if data["start_at"] is None else float(data["start_at"])
            return cls(int(data["index"]), int(data["parts"]), start_at, float(data["planned_at"]))
        except KeyError as exc:
            raise ValueError(f"not a load part: missing field {exc.args[0]!r} in {dict(data)}") from exc


def plan_parts(
    schedule: Schedule,
    max_rate_per_worker: float = DEFAULT_MAX_RATE_PER_WORKER,
    *,
    lead_s: float = DEFAULT_START_LEAD_S,
    clock: Callable[[], float] = time.time,
) -> list[LoadPart]:
    """The parts of `schedule`, all starting `lead_s` from now on the wall clock (one part: when ready)."""
    if not (lead_s >= 0 and math.isfinite(lead_s)):
        raise ValueError(f"start lead must be a finite number of seconds >= 0, got {lead_s!r}")
    parts = parts_needed(schedule, max_rate_per_worker)
    now = clock()
    start_at = None if parts == 1 else now + lead_s
    return [LoadPart(i, parts, start_at, now) for i in range(parts)]


@dataclass
class PartResult:
    """What one part measured, and when it really began.

    `start_late_ms`: how long after `start_at` (on this part's clock) it was ready to send; its
    requests still count latency from their intended times, so a late part shows as queueing.
    `clock_gap_ms`: this part's clock at its start minus the planner's at planning: the real time
    between the two plus the clocks' difference, so a negative gap means this clock runs behind.
    `ended_at`: this part's clock when its load ended (Unix time, s); None from a part that did not say.
    """

    part: LoadPart
    result: LoadResult
    start_late_ms: float
    clock_gap_ms: float
    host: str
    ended_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": self.part.to_dict(),
            "start_late_ms": round(self.start_late_ms, 3),
            "clock_gap_ms": round(self.clock_gap_ms, 3),
            "host": self.host,
            "ended_at": self.ended_at,
            "result": self.result.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartResult:
        try:
            return cls(
                part=LoadPart.from_dict(data["part"]),
                result=LoadResult.from_dict(data["result"]),
                start_late_ms=float(data["start_late_ms"]),
                clock_gap_ms=float(data["clock_gap_ms"]),
                host=str(data["host"]),
                ended_at=None if data.get("ended_at") is None else float(data["ended_at"]),
            )
        except KeyError as exc:
            raise ValueError(f"not a load part result: missing field {exc.args[0]!r}") from exc


def run_part(
    request: RequestSpec,
    schedule: Schedule,
    part: LoadPart,
    *,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    lag_threshold_ms: float = DEFAULT_LAG_THRESHOLD_MS,
    host: str | None = None,
) -> PartResult:
    """Wait for the part's start time, then send its shard of `schedule`; blocking.

    The wall-clock start is turned into a monotonic one once, so the schedule itself is paced by
    the monotonic clock, like a single-process load.
    """
    wall, mono = time.time(), time.monotonic()
    start_at = wall if part.start_at is None else part.start_at
    start_mono = mono + (start_at - wall)
    late_ms = max(0.0, (wall - start_at) * 1e3)
    result = run_on_best_loop(
        open_loop(
            request,
            schedule,
            max_in_flight=max_in_flight,
            lag_threshold_ms=lag_threshold_ms,
            shard=part.index,
            shards=part.parts,
            start_at=start_mono,
        )
    )
    gap_ms = (wall - part.planned_at) * 1e3
    return PartResult(part, result, late_ms, gap_ms, host or socket.gethostname(), ended_at=time.time())


@dataclass
class SplitOutcome:
    """The merged result of every part, and what each part says about its own start and end.

    `merged_at` is the merger's clock when it merged, after every part had ended: a part that says it
    ended later than that runs ahead of the merger's clock.
    """

    result: LoadResult
    parts: list[PartResult]
    tolerance_ms: float = LATE_START_TOLERANCE_MS
    merged_at: float | None = None

    @property
    def late_parts(self) -> list[PartResult]:
        return [p for p in self.parts if p.start_late_ms > self.tolerance_ms]

    @property
    def clock_behind_parts(self) -> list[PartResult]:
        return [p for p in self.parts if p.clock_gap_ms < -self.tolerance_ms]

    def clock_ahead_ms(self, part: PartResult) -> float | None:
        """How far past the merger's clock the part says it ended (ms); None when either time is unknown."""
        if part.ended_at is None or self.merged_at is None:
            return None
        return (part.ended_at - self.merged_at) * 1e3

    @property
    def clock_ahead_parts(self) -> list[PartResult]:
        return [p for p in self.parts if (self.clock_ahead_ms(p) or 0.0) > self.tolerance_ms]

    def notes(self) -> list[str]:
        """Sentences on late starters and clocks out of step; empty when every part began and ended in step."""
        notes = []
        for p in self.late_parts:
            notes.append(
                f"load part {p.part.index} of {p.part.parts} (on {p.host}) started {p.start_late_ms:.0f} ms "
                f"late (tolerance {self.tolerance_ms:g} ms): it was picked up after the shared start, so "
                "its share arrived in a burst; give the plan a longer start lead or more worker slots"
            )
        for p in self.clock_behind_parts:
            notes.append(
                f"the clock of load part {p.part.index} (on {p.host}) runs at least {-p.clock_gap_ms:.0f} ms "
                "behind the planner's: its share started late in real time; synchronise the workers' "
                "clocks (NTP, chrony)"
            )
        for p in self.clock_ahead_parts:
            notes.append(
                f"the clock of load part {p.part.index} (on {p.host}) runs at least {self.clock_ahead_ms(p):.0f} ms "
                "ahead of the merger's: it says its share ended after the merge began; synchronise the workers' "
                "clocks (NTP, chrony)"
            )
        return notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "parts": len(self.parts),
            "start_at": self.parts[0].part.start_at,
            "start_tolerance_ms": self.tolerance_ms,
            "late_parts": [p.part.index for p in self.late_parts],
            "clock_behind_parts": [p.part.index for p in self.clock_behind_parts],
            "clock_ahead_parts": [p.part.index for p in self.clock_ahead_parts],
            "notes": self.notes(),
            "by_part": [
                {
                    "index": p.part.index,
                    "host": p.host,
                    "start_late_ms": round(p.start_late_ms, 3),
                    "clock_gap_ms": round(p.clock_gap_ms, 3),
                    "clock_ahead_ms": None if (ahead := self.clock_ahead_ms(p)) is None else round(ahead, 3),
                    "scheduled": p.result.scheduled,
                    "completed": p.result.completed,
                    "achieved_rate": round(p.result.achieved_rate, 3),
                    "p99_ms": p.result.latency_ms.p99,
                }
                for p in self.parts
            ],
        }


def merge_parts(
    parts: Iterable[PartResult | Mapping[str, Any]],
    *,
    tolerance_ms: float = LATE_START_TOLERANCE_MS,
    clock: Callable[[], float] = time.time,
) -> SplitOutcome:
    """Merge every part of one split load exactly; refuses parts missing, repeated or of another load.

    Called once every part has ended: `clock` is read as the merge's time, against which a part's end
    is checked.
    """
    merged_at = clock()
    found = [p if isinstance(p, PartResult) else PartResult.from_dict(p) for p in parts]
    if not found:
        raise ValueError("no load parts to merge")
    expected = found[0].part.parts
    starts = {p.part.start_at for p in found}
    if any(p.part.parts != expected for p in found) or len(starts) > 1:
        raise ValueError("load parts come from different plans (part counts or start times differ)")
    indices = sorted(p.part.index for p in found)
    if indices != list(range(expected)):
        missing = sorted(set(range(expected)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise ValueError(f"load parts do not make up the whole load: missing {missing}, repeated {repeated}")
    found.sort(key=lambda p: p.part.index)
    return SplitOutcome(merge_results(p.result for p in found), found, tolerance_ms, merged_at)
