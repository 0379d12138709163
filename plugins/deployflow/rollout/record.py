"""The decision record of one rollout: every traffic change and every gate window, with the numbers.

Written as JSON beside the other stage reports (``rollout-<task>.json``), it is what a person
reads to see why a rollout went on or came back, and what the timeline picture draws:

    {"endpoint", "new", "old", "model", "plan", "started_at", "ended_at", "outcome",
     "events":  [{"t_s", "at", "kind": "traffic" | "rollback" | "finish" | "approval" | "bake",
                  "traffic": {...}, "mirror": {...}, "line"}],
     "windows": [{"step_index", "step", "bake", "t_start_s", "t_end_s", "traffic", "mirror",
                  "source": "live" | "probe" | "live+probe", "source_note",
                  "new": {requests, errors_5xx, timeouts, errors_4xx, error_rate, p50_ms, p95_ms, p99_ms},
                  "old": {...} | null, "agreement": {compared, agreed, rate, disagreements} | null,
                  "thresholds": {...GateSpec}, "verdict", "reasons"}]}

``t_s`` are seconds since the rollout started (monotonic), ``at`` wall-clock ISO times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from deployflow.rollout.gates import GateResult, GateSpec, WindowStats


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def stats_dict(stats: WindowStats | None, gates: GateSpec) -> dict[str, Any] | None:
    """A window's numbers as the record keeps them, the error rate as the gate counted it."""
    if stats is None:
        return None
    return {**stats.to_dict(), "error_rate": stats.error_rate(count_4xx=gates.count_4xx_as_errors)}


@dataclass
class DecisionRecord:
    """Collects the rollout's events and windows as they happen; ``to_dict()`` is the JSON."""

    endpoint: str
    new: str
    old: str | None
    model: str
    plan: dict[str, Any] | None = None
    started_at: str = field(default_factory=_now)
    ended_at: str | None = None
    outcome: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def elapsed(self) -> float:
        return round(time.monotonic() - self._t0, 3)

    def event(
        self, kind: str, line: str, *, traffic: dict[str, int] | None = None, mirror: dict[str, int] | None = None
    ) -> None:
        self.events.append(
            {"t_s": self.elapsed(), "at": _now(), "kind": kind, "traffic": traffic, "mirror": mirror, "line": line}
        )

    def window(
        self,
        *,
        step_index: int,
        step: str,
        t_start_s: float,
        traffic: dict[str, int],
        mirror: dict[str, int],
        source: str,
        source_note: str,
        new: WindowStats | None,
        old: WindowStats | None,
        agreement: dict[str, Any] | None,
        gates: GateSpec,
        result: GateResult,
        bake: bool = False,
    ) -> None:
        self.windows.append(
            {
                "step_index": step_index,
                "step": step,
                "bake": bake,
                "t_start_s": t_start_s,
                "t_end_s": self.elapsed(),
                "traffic": dict(traffic),
                "mirror": dict(mirror),
                "source": source,
                "source_note": source_note,
                "new": stats_dict(new, gates),
                "old": stats_dict(old, gates),
                "agreement": agreement,
                "thresholds": gates.to_dict(),
                "verdict": result.verdict.value,
                "reasons": list(result.reasons),
            }
        )

    def end(self, outcome: str) -> None:
        self.outcome, self.ended_at = outcome, _now()

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "new": self.new,
            "old": self.old,
            "model": self.model,
            "plan": self.plan,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "duration_s": self.elapsed(),
            "events": self.events,
            "windows": self.windows,
        }


def close_record(
    document: dict[str, Any], events: list[tuple[str, str, dict[str, int] | None, str | None]], outcome: str
) -> None:
    """End a record written by a task that has finished, with what happened after it: ``(kind, line,
    traffic, at)`` events (an approval answered, a rollback done by another task; ``at`` an ISO time,
    None for now) and the outcome.

    Their ``t_s`` count from the record's ``started_at`` on the wall clock (the writer's monotonic
    clock is gone with its process).
    """
    started = datetime.fromisoformat(document["started_at"])
    for kind, line, traffic, at in events:
        when = datetime.fromisoformat(at) if at else datetime.now(UTC)
        document.setdefault("events", []).append(
            {"t_s": round((when - started).total_seconds(), 3), "at": when.isoformat(timespec="milliseconds"),
             "kind": kind, "traffic": traffic, "mirror": {} if traffic is not None else None, "line": line}
        )  # fmt: skip
    document["outcome"], document["ended_at"] = outcome, _now()
    document["duration_s"] = round((datetime.now(UTC) - started).total_seconds(), 3)
