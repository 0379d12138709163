"""Hand-written decision records (the shape of deployflow.rollout.record) for the timeline's tests."""

from __future__ import annotations

from typing import Any

GATES = {"max_error_rate": 0.01, "max_p99_ms": None, "max_p99_ratio": 3.0, "min_requests": 50}


def stats(requests: int, error_rate: float, p99_ms: float) -> dict[str, Any]:
    errors = round(requests * error_rate)
    return {"requests": requests, "errors_5xx": errors, "timeouts": 0, "errors_4xx": 0, "error_rate": error_rate,
            "p50_ms": p99_ms / 4, "p95_ms": p99_ms / 2, "p99_ms": p99_ms}  # fmt: skip


def window(index: int, step: str, start: float, end: float, traffic: dict, mirror: dict, *,
           verdict: str = "pass", source: str = "live", new: dict | None = None, old: dict | None = None,
           bake: bool = False) -> dict:  # fmt: skip
    return {
        "step_index": index, "step": step, "bake": bake, "t_start_s": start, "t_end_s": end,
        "traffic": traffic, "mirror": mirror, "source": source, "source_note": "",
        "new": new or stats(400, 0.0, 12.0), "old": old or stats(1600, 0.0, 10.0),
        "agreement": None, "thresholds": GATES, "verdict": verdict,
        "reasons": [f"error rate {100 * (new or {}).get('error_rate', 0):.1f}%, limit 1%"],
    }  # fmt: skip


def event(t: float, kind: str, line: str, traffic: dict | None = None, mirror: dict | None = None) -> dict:
    return {"t_s": t, "at": "2026-12-01T10:00:00+00:00", "kind": kind, "traffic": traffic, "mirror": mirror,
            "line": line}  # fmt: skip


def base(outcome: str, events: list[dict], windows: list[dict], duration: float) -> dict[str, Any]:
    return {"endpoint": "diabetes", "new": "blue-2", "old": "green-1", "model": "diabetes:2", "plan": None,
            "started_at": "2026-12-01T10:00:00+00:00", "ended_at": "2026-12-01T10:02:00+00:00",
            "outcome": outcome, "duration_s": duration, "events": events, "windows": windows}  # fmt: skip


OLD, NEW = "green-1", "blue-2"


def completed() -> dict[str, Any]:
    """Mirror 20 %, traffic 50 % (probe-filled), 100 %, a bake on live traffic, then completion."""
    events = [
        event(0, "traffic", "mirror 20% of traffic to blue-2", {OLD: 100}, {NEW: 20}),
        event(30, "traffic", "traffic blue-2 50%, green-1 50%", {OLD: 50, NEW: 50}, {}),
        event(60, "traffic", "traffic blue-2 100%", {NEW: 100}, {}),
        event(90, "bake", "bake 30 s on live traffic"),
        event(120, "finish", "completed: green-1 deleted"),
    ]
    windows = [
        window(0, "mirror 20% 30s", 0, 30, {OLD: 100}, {NEW: 20}),
        window(
            1,
            "traffic 50% 30s",
            30,
            60,
            {OLD: 50, NEW: 50},
            {},
            source="live+probe",
            new=stats(900, 0.002, 14.0),
            old=stats(880, 0.001, 11.0),
        ),  # fmt: skip
        window(2, "traffic 100%", 60, 90, {NEW: 100}, {}, new=stats(1800, 0.001, 13.0)),
        window(3, "bake", 90, 120, {NEW: 100}, {}, bake=True, new=stats(1800, 0.0, 12.5)),
    ]
    return base("completed", events, windows, 120)


def rolled_back_at_mirror() -> dict[str, Any]:
    """The mirrored copies failed: the first window fails and all traffic stays with the old deployment."""
    events = [
        event(0, "traffic", "mirror 20% of traffic to blue-2", {OLD: 100}, {NEW: 20}),
        event(31, "rollback", "rolled back: error rate 12% over 1%", {OLD: 100}, {}),
    ]
    windows = [
        window(
            0,
            "mirror 20% 30s",
            0,
            30,
            {OLD: 100},
            {NEW: 20},
            verdict="fail",
            source="probe",
            new=stats(300, 0.12, 40.0),
            old=stats(1500, 0.0, 10.0),
        ),  # fmt: skip
    ]
    return base("rolled_back", events, windows, 31)


def bake_failure() -> dict[str, Any]:
    """Every step passed, then the bake at 100 % saw p99 triple: rolled back from full traffic."""
    events = [
        event(0, "traffic", "traffic blue-2 50%", {OLD: 50, NEW: 50}, {}),
        event(20, "traffic", "traffic blue-2 100%", {NEW: 100}, {}),
        event(40, "bake", "bake 20 s on live traffic"),
        event(61, "rollback", "rolled back: p99 95 ms is 3.4x green-1's", {OLD: 100}, {}),
    ]
    windows = [
        window(0, "traffic 50% 20s", 0, 20, {OLD: 50, NEW: 50}, {}),
        window(1, "traffic 100% 20s", 20, 40, {NEW: 100}, {}),
        window(
            2,
            "bake",
            40,
            60,
            {NEW: 100},
            {},
            bake=True,
            verdict="fail",
            new=stats(1200, 0.0, 95.0),
            old=stats(0, 0.0, 28.0),
        ),  # fmt: skip
    ]
    return base("rolled_back", events, windows, 61)
