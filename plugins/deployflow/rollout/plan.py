"""A rollout plan is data: ordered steps, the gates each window must pass, and what to do after.

Read from a JSON-able dict (steps as dicts or as compact text) or from the text lines alone;
every problem is reported at once, each saying what to change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deployflow.defaults import ROLLOUT_PLAN_FILE
from deployflow.rollout.gates import GateSpec
from deployflow.rollout.steps import (
    ApprovalStep,
    MirrorStep,
    RolloutPlanError,
    RolloutStep,
    TrafficStep,
    parse_step,
)

DEFAULT_PLAN_FILE = ROLLOUT_PLAN_FILE

#: what an inconclusive window leads to: watch another window, ask a person, or roll back
ON_INCONCLUSIVE = ("hold", "ask", "rollback")
#: which traffic a gate window judges: users' when there is enough of it, else the probe's
#: ("auto"); only users' ("live"); only the probe's ("probe"); or both, failing if either fails
GATE_SOURCES = ("auto", "live", "probe", "both")


@dataclass(frozen=True)
class RolloutPlan:
    """How the new deployment takes over the endpoint, step by step, and when to stop.

    An inconclusive window is held (observed again) up to `max_inconclusive_windows` times
    and then put to a person (`on_inconclusive="hold"`), put to a person at once ("ask"),
    or treated as a failure ("rollback").

    Once the new deployment holds all traffic it **bakes**: a last window of `bake_s` seconds
    judged like the others while the old deployment still exists; a failed bake sends traffic
    back to it. The old deployment is deleted `old_deployment_delete_after_s` seconds after the
    bake passes. `gate_source` says which traffic windows judge (see GATE_SOURCES);
    `shadow_requests` names a file of recorded requests (a JSON list, or JSON Lines) that a
    mirror step's shadow comparison sends to both deployments besides the package's samples.
    """

    steps: tuple[RolloutStep, ...]
    gates: GateSpec = field(default_factory=GateSpec)
    old_deployment_delete_after_s: float = 0.0
    on_inconclusive: str = "hold"
    max_inconclusive_windows: int = 3
    bake_s: float = 30.0
    gate_source: str = "auto"
    shadow_requests: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        problems = _sequence_problems(self.steps)
        delay = self.old_deployment_delete_after_s
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not delay >= 0:
            problems.append(f"old_deployment_delete_after_s must be a number of seconds >= 0, got {delay!r}")
        if isinstance(self.bake_s, bool) or not isinstance(self.bake_s, int | float) or not self.bake_s >= 0:
            problems.append(f"bake_s must be a number of seconds >= 0 (0: no bake), got {self.bake_s!r}")
        if self.gate_source not in GATE_SOURCES:
            problems.append(f"gate_source must be one of {', '.join(GATE_SOURCES)}, got {self.gate_source!r}")
        if self.shadow_requests is not None and not isinstance(self.shadow_requests, str):
            problems.append(f"shadow_requests must be the path of a request file, got {self.shadow_requests!r}")
        if self.on_inconclusive not in ON_INCONCLUSIVE:
            problems.append(
                f"on_inconclusive must be one of {', '.join(ON_INCONCLUSIVE)}, got {self.on_inconclusive!r}"
            )
        windows = self.max_inconclusive_windows
        if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
            problems.append(f"max_inconclusive_windows must be a whole number >= 1, got {windows!r}")
        if problems:
            raise RolloutPlanError("rollout plan: " + "; ".join(problems))

    @classmethod
    def from_text(cls, lines: Sequence[str], **options: Any) -> RolloutPlan:
        """A plan from text steps, e.g. ["mirror 20% 60s", "traffic 10% 60s", "approve", "traffic 100%"]."""
        return cls.from_dict({"steps": list(lines), **options})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutPlan:
        """A plan from its dict form; steps may be text or dicts, gates a dict of GateSpec fields."""
        known = {
            "steps", "gates", "old_deployment_delete_after_s", "on_inconclusive", "max_inconclusive_windows",
            "bake_s", "gate_source", "shadow_requests",
        }  # fmt: skip
        problems = []
        unknown = sorted(set(data) - known - {"_comment"})
        if unknown:
            problems.append(f"unknown key(s) {', '.join(unknown)}; known keys are {', '.join(sorted(known))}")
        raw_steps = data.get("steps")
        if isinstance(raw_steps, str) or not isinstance(raw_steps, Sequence):
            problems.append(f"'steps' must be a list such as ['traffic 10% 60s', 'traffic 100%'], got {raw_steps!r}")
            raw_steps = []
        steps = []
        for number, raw in enumerate(raw_steps, start=1):
            try:
                steps.append(parse_step(raw))
            except RolloutPlanError as e:
                problems.append(f"step {number}: {e}")
        gates = data.get("gates", {})
        if isinstance(gates, GateSpec):
            spec = gates
        else:
            try:
                spec = GateSpec.from_dict(gates)
            except (TypeError, ValueError) as e:
                problems.append(str(e))
        if problems:
            raise RolloutPlanError("rollout plan: " + "; ".join(problems))
        options = {k: data[k] for k in known - {"steps", "gates"} if k in data}
        return cls(tuple(steps), spec, **options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [step.to_dict() for step in self.steps],
            "gates": self.gates.to_dict(),
            "old_deployment_delete_after_s": self.old_deployment_delete_after_s,
            "on_inconclusive": self.on_inconclusive,
            "max_inconclusive_windows": self.max_inconclusive_windows,
            "bake_s": self.bake_s,
            "gate_source": self.gate_source,
            "shadow_requests": self.shadow_requests,
        }

    def to_text(self) -> list[str]:
        return [step.to_text() for step in self.steps]

    def override(self, changes: Mapping[str, Any]) -> RolloutPlan:
        """This plan with a run's overrides: top-level keys replace, `gates` keys merge into the gates."""
        data = self.to_dict()
        for key, value in changes.items():
            data[key] = {**data["gates"], **value} if key == "gates" and isinstance(value, Mapping) else value
        return RolloutPlan.from_dict(data)

    def without_mirror(self) -> RolloutPlan:
        """The plan minus its mirror steps, for Kubernetes endpoints, where Azure ML cannot mirror."""
        return replace(self, steps=tuple(s for s in self.steps if not isinstance(s, MirrorStep)))


def load_plan(path: str | Path = DEFAULT_PLAN_FILE) -> RolloutPlan:
    """The plan in a JSON file (by default deployflow's own, deployflow/include/rollout/default_plan.json)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RolloutPlanError(f"cannot read the rollout plan {path}: {e}") from e
    try:
        return RolloutPlan.from_dict(data)
    except RolloutPlanError as e:
        raise RolloutPlanError(f"{path}: {e}") from e


def _sequence_problems(steps: Sequence[RolloutStep]) -> list[str]:
    if not steps:
        return ["a plan needs at least one step; the shortest is ['traffic 100%']"]
    problems = []
    last_traffic: TrafficStep | None = None
    last_mirror: MirrorStep | None = None
    for number, step in enumerate(steps, start=1):
        where = f"step {number} ({step.to_text()})"
        if isinstance(step, MirrorStep):
            if last_traffic is not None:
                problems.append(
                    f"{where} comes after live traffic has moved; put mirror steps before the first traffic step, "
                    "since Azure ML cannot mirror to a deployment that takes live traffic"
                )
            if last_mirror is not None and step.percent < last_mirror.percent:
                problems.append(f"{where}: mirroring must not fall from {last_mirror.percent} % to {step.percent} %")
            last_mirror = step
        elif isinstance(step, TrafficStep):
            if last_traffic is not None and step.percent < last_traffic.percent:
                problems.append(
                    f"{where}: traffic must not fall from {last_traffic.percent} % to {step.percent} %; "
                    "moving traffic back is what a failed gate's rollback does"
                )
            if step.duration_s is None and number < len(steps):
                problems.append(
                    f"{where} needs a window for its gate, e.g. 'traffic {step.percent}% 60s'; "
                    "only the final 100 % step may go without one"
                )
            last_traffic = step
    final = steps[-1]
    if not (isinstance(final, TrafficStep) and final.percent == 100):
        problems.append(
            f"the last step must be 'traffic 100%' so the new deployment ends with all traffic, got '{final.to_text()}'"
        )
    return problems


__all__ = [
    "DEFAULT_PLAN_FILE",
    "ApprovalStep",
    "MirrorStep",
    "RolloutPlan",
    "RolloutPlanError",
    "RolloutStep",
    "TrafficStep",
    "load_plan",
]
