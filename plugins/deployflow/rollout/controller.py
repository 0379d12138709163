"""The rollout's decisions as a pure state machine: observed traffic and recorded verdicts in, one action out.

The endpoint's observed traffic says where the rollout stands, so a retried task resumes
where the endpoint really is; the recorded decisions only say which gates and approvals
have already been passed. A position that matches no step is rounded down to the last
step at or below it, so the rollout never moves past a gate it has not observed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from deployflow.rollout.actions import Action, AskApproval, Finish, Observe, RollBack, SetTraffic
from deployflow.rollout.gates import GateResult
from deployflow.rollout.plan import RolloutPlan
from deployflow.rollout.steps import ApprovalStep, MirrorStep, TrafficStep

_COMPLETES = ("pass", "approved", "not judged")  # "not judged": a dry run's gate, which sent nothing
_FAILS = ("fail", "denied")


class RolloutStateError(ValueError):
    """The endpoint's traffic is in a state the rollout must not touch; the message says why."""


class Phase(StrEnum):
    RUNNING = "running"
    ROLLING_BACK = "rolling back"


@dataclass(frozen=True)
class Decision:
    """One recorded verdict for one step: a gate's pass/fail/inconclusive, or a person's approved/denied."""

    step_index: int
    outcome: str
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"step_index": self.step_index, "outcome": self.outcome, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class RolloutState:
    """The plan and the decisions taken so far, oldest first; JSON-able through to_dict() for XCom."""

    plan: RolloutPlan
    history: tuple[Decision, ...] = ()

    @property
    def step_index(self) -> int:
        """The step after the furthest one passed (len(steps) when the last has passed).

        Steps below a passed one count as behind the rollout even without a verdict of their
        own: a resumed rollout that found the endpoint past them never went back to judge them.
        """
        passed = [d.step_index for d in self.history if d.outcome in _COMPLETES]
        return max(passed) + 1 if passed else 0

    @property
    def failure(self) -> Decision | None:
        """The decision that ends the rollout: a failed gate, a refusal, or an inconclusive gate under 'rollback'."""
        for decision in self.history:
            if decision.outcome in _FAILS:
                return decision
            if decision.outcome == "inconclusive" and self.plan.on_inconclusive == "rollback":
                return decision
        return None

    @property
    def phase(self) -> Phase:
        return Phase.ROLLING_BACK if self.failure else Phase.RUNNING

    def record_gate(self, step_index: int, result: GateResult) -> RolloutState:
        return self._record(Decision(step_index, result.verdict.value, tuple(result.reasons)))

    def record_approval(self, step_index: int, approved: bool, note: str = "") -> RolloutState:
        """Record a person's answer; a timeout is a refusal, with the note saying so."""
        return self._record(Decision(step_index, "approved" if approved else "denied", (note,) if note else ()))

    def inconclusive_windows(self, step_index: int) -> list[Decision]:
        return [d for d in self.history if d.step_index == step_index and d.outcome == "inconclusive"]

    def _record(self, decision: Decision) -> RolloutState:
        if not 0 <= decision.step_index < len(self.plan.steps):
            raise ValueError(f"the plan has steps 0-{len(self.plan.steps) - 1}, got step index {decision.step_index}")
        return RolloutState(self.plan, (*self.history, decision))

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict(), "history": [d.to_dict() for d in self.history]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutState:
        history = tuple(
            Decision(d["step_index"], d["outcome"], tuple(d.get("reasons", ()))) for d in data.get("history", ())
        )
        return cls(RolloutPlan.from_dict(data["plan"]), history)


def next_action(
    state: RolloutState,
    observed_traffic: Mapping[str, int],
    observed_mirror: Mapping[str, int],
    new: str,
    old: str,
    *,
    endpoint: str,
) -> Action:
    """The one thing to do next, given the endpoint's traffic as read just now.

    Raises RolloutStateError when another deployment holds traffic or live traffic does not
    sum to 100: the rollout cannot tell who put it there, so it leaves the endpoint alone.
    """
    if new == old:
        raise ValueError(f"endpoint {endpoint}: the new and the current deployment are both named {new!r}")
    rollout = _Rollout(state, new, old, endpoint)
    if (failure := state.failure) is not None:
        return rollout.roll_back(failure)
    observed = _observed_position(observed_traffic, observed_mirror, new, old, endpoint)
    targets = rollout.targets
    steps = len(targets)
    done = state.step_index
    floor = max((i for i in range(steps) if targets[i] <= observed), default=-1)
    if floor >= done:
        # the endpoint is at or past the first step not yet passed: resume from what it shows
        exact = [i for i in range(done, steps) if targets[i] == observed]
        if exact:
            return rollout.act_on(exact[0])
        back_to = min(i for i in range(done, floor + 1) if targets[i] == targets[floor])
        note = f"found traffic {rollout.shares(observed)}, which matches no step; back to "
        return rollout.set_traffic(back_to, note=note)
    # the endpoint is behind the gates already passed: move it on to the first step not passed
    index = min(done, steps - 1)
    if done == steps and observed == targets[-1]:
        return rollout.finish()
    passed_position = targets[done - 1] if done else (0, 0)
    if observed == passed_position:
        return rollout.set_traffic(index)
    note = f"found traffic {rollout.shares(observed)}, behind the gates already passed; restoring "
    return rollout.set_traffic(index, note=note)


def _observed_position(
    traffic: Mapping[str, int], mirror: Mapping[str, int], new: str, old: str, endpoint: str
) -> tuple[int, int]:
    """(live %, mirrored %) of the new deployment, after checking nobody else holds traffic."""
    strangers = {d: p for d, p in {**traffic, **mirror}.items() if p and d not in (new, old)}
    if strangers:
        raise RolloutStateError(
            f"endpoint {endpoint}: deployment(s) {_fmt(strangers)} hold traffic besides {old} and {new}; "
            "finish or undo that change before rolling out"
        )
    if mirror.get(old):
        raise RolloutStateError(f"endpoint {endpoint}: traffic is mirrored to the current deployment {old}; stop it")
    total = sum(traffic.values())
    if total != 100:
        raise RolloutStateError(
            f"endpoint {endpoint}: live traffic {_fmt(traffic)} sums to {total}, not 100; "
            f"give {old} all traffic before rolling out {new}"
        )
    return traffic.get(new, 0), mirror.get(new, 0)


class _Rollout:
    """The plan seen from one endpoint: each step's target traffic, and the actions with their lines."""

    def __init__(self, state: RolloutState, new: str, old: str, endpoint: str) -> None:
        self.state, self.plan = state, state.plan
        self.new, self.old, self.endpoint = new, old, endpoint
        self.targets = _targets(self.plan)

    def act_on(self, index: int) -> Action:
        """The action for a step whose traffic is already in place."""
        step = self.plan.steps[index]
        where = self.where(index)
        if isinstance(step, ApprovalStep):
            question = f"Continue rolling out {self.new} on endpoint {self.endpoint}? Traffic is {self.live(index)}."
            return AskApproval(
                question, step.timeout_s, index, f"endpoint {self.endpoint}: waiting for approval {where}"
            )
        if not step.gated:
            return self.finish()
        assert step.duration_s is not None  # gated steps have a window
        held = self.state.inconclusive_windows(index)
        if not held:
            line = (
                f"endpoint {self.endpoint}: observing {self.new} against {self.old} for {step.duration_s:g} s {where}"
            )
            return Observe(step.duration_s, index, line)
        if self.plan.on_inconclusive == "hold" and len(held) < self.plan.max_inconclusive_windows:
            line = (
                f"endpoint {self.endpoint}: gate inconclusive ({'; '.join(held[-1].reasons)}); observing window "
                f"{len(held) + 1} of up to {self.plan.max_inconclusive_windows} {where}"
            )
            return Observe(step.duration_s, index, line)
        question = (
            f"The gate for {self.new} on endpoint {self.endpoint} stayed inconclusive after {len(held)} window(s) "
            f"{where}: {'; '.join(held[-1].reasons)}. Continue the rollout anyway?"
        )
        return AskApproval(question, None, index, f"endpoint {self.endpoint}: gate inconclusive, asking {where}")

    def set_traffic(self, index: int, note: str = "") -> SetTraffic:
        traffic, mirror = self.shares_dicts(self.targets[index])
        line = f"endpoint {self.endpoint}: {note}traffic {_fmt(traffic)}"
        if mirror:
            line += f", mirror {_fmt(mirror)}"
        return SetTraffic(traffic, mirror, index, f"{line} {self.where(index)}")

    def roll_back(self, failure: Decision) -> RollBack:
        traffic = {self.old: 100, self.new: 0}
        why = "; ".join(failure.reasons) or failure.outcome
        cause = "approval refused" if failure.outcome == "denied" else f"gate {failure.outcome}"
        line = (
            f"endpoint {self.endpoint}: rolling back to traffic {_fmt(traffic)}, no mirror — "
            f"{cause} {self.where(failure.step_index)}: {why}"
        )
        return RollBack(traffic, {}, failure.reasons, line)

    def finish(self) -> Finish:
        delay = self.plan.old_deployment_delete_after_s
        line = (
            f"endpoint {self.endpoint}: {self.new} holds all traffic {self.where(len(self.plan.steps) - 1)}; "
            f"deleting {self.old} in {delay:g} s"
        )
        return Finish(self.old, delay, line)

    def where(self, index: int) -> str:
        return f"(step {index + 1}/{len(self.plan.steps)}: {self.plan.steps[index].describe()})"

    def live(self, index: int) -> str:
        traffic, mirror = self.shares_dicts(self.targets[index])
        return _fmt(traffic) + (f", mirror {_fmt(mirror)}" if mirror else "")

    def shares(self, position: tuple[int, int]) -> str:
        traffic, mirror = self.shares_dicts(position)
        return _fmt(traffic) + (f" + mirror {_fmt(mirror)}" if mirror else "")

    def shares_dicts(self, position: tuple[int, int]) -> tuple[dict[str, int], dict[str, int]]:
        live, mirrored = position
        return {self.old: 100 - live, self.new: live}, ({self.new: mirrored} if mirrored else {})


def _targets(plan: RolloutPlan) -> list[tuple[int, int]]:
    """(live %, mirrored %) of the new deployment once each step is in place; ordered, as the plan checks."""
    targets, current = [], (0, 0)
    for step in plan.steps:
        if isinstance(step, MirrorStep):
            current = (0, step.percent)
        elif isinstance(step, TrafficStep):
            current = (step.percent, 0)
        targets.append(current)
    return targets


def _fmt(shares: Mapping[str, int]) -> str:
    return "{" + ", ".join(f"{name}: {percent}" for name, percent in shares.items()) + "}"


__all__ = ["Decision", "Phase", "RolloutState", "RolloutStateError", "next_action"]
