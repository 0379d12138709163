"""Drive a rollout plan against a platform: the loop between the pure controller and the endpoint.

Reads the endpoint's traffic before every decision, acts, measures gate windows with the
probe, and rolls back on a failed gate. No Airflow: the operator and the benchmark both use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployflow.platform.base import MLPlatform
from deployflow.platform.cleanup import remove_quietly
from deployflow.rollout.actions import Action, AskApproval, Finish, Observe, RollBack, SetTraffic
from deployflow.rollout.controller import RolloutState, next_action
from deployflow.rollout.gates import GateResult, GateSpec, WindowStats, early_failure, evaluate_gate
from deployflow.rollout.probe import Probe

log = logging.getLogger(__name__)
ActionHook = Callable[[Action, float], None]


class RolledBack(Exception):
    """A gate failed or a person said no: traffic is back on the old deployment, the new one is gone."""

    def __init__(self, message: str, state: RolloutState) -> None:
        super().__init__(message)
        self.state = state


@dataclass
class RolloutProgress:
    """Where the drive stopped: at Finish (``finish`` set) or at an approval nobody has answered yet."""

    state: RolloutState
    finish: Finish | None = None
    question: str | None = None
    traffic_changes: list[str] = field(default_factory=list)

    def decisions(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.state.history]


def roll_back(platform: MLPlatform, endpoint: str, new: str, old: str, logger: Any = log) -> None:
    """All traffic to ``old``, no mirror, and the new deployment removed.

    The traffic must move (an error there propagates); the delete is best effort, so a delete that
    fails leaves a warning saying what to remove by hand instead of hiding that the rollout failed.
    """
    logger.info("endpoint %s: traffic {%s: 100}, mirror {} (rolling back from %s)", endpoint, old, new)
    platform.set_traffic(endpoint, traffic={old: 100}, mirror_traffic={})
    what = f"delete deployment {endpoint}/{new}"
    if remove_quietly(lambda: platform.delete_deployment(endpoint, new), what, logger):
        logger.info("endpoint %s: deleted deployment %s", endpoint, new)


def drive_rollout(
    platform: MLPlatform,
    *,
    endpoint: str,
    new: str,
    old: str,
    state: RolloutState,
    probe: Probe,
    approval: bool | None = None,
    logger: Any = log,
    on_action: ActionHook | None = None,
) -> RolloutProgress:
    """Run the plan from wherever the endpoint stands; raise RolledBack after a rollback."""
    progress = RolloutProgress(state)
    while True:
        observed = platform.get_endpoint(endpoint)
        action = next_action(progress.state, observed.traffic, observed.mirror_traffic, new, old, endpoint=endpoint)
        logger.info("%s", action.line)
        if on_action:
            on_action(action, time.monotonic())
        if isinstance(action, SetTraffic):
            platform.set_traffic(endpoint, traffic=action.traffic, mirror_traffic=action.mirror)
            progress.traffic_changes.append(action.line)
        elif isinstance(action, Observe):
            result = _measure_gate(probe, progress.state.plan.gates, action.window_s, new, old, logger)
            progress.state = progress.state.record_gate(action.step_index, result)
            logger.info(
                "gate of step %d: %s; %s", action.step_index + 1, result.verdict.value, "; ".join(result.reasons)
            )
        elif isinstance(action, AskApproval):
            if approval is None:
                progress.question = action.question
                return progress
            progress.state = progress.state.record_approval(action.step_index, approval)
            approval = None  # one answer covers one approval step
        elif isinstance(action, RollBack):
            roll_back(platform, endpoint, new, old, logger)
            raise RolledBack(
                f"rollout of {new} on {endpoint} rolled back: " + "; ".join(action.reasons), progress.state
            )
        elif isinstance(action, Finish):
            progress.finish = action
            return progress


def _measure_gate(probe: Probe, gates: GateSpec, window_s: float, new: str, old: str, logger: Any) -> GateResult:
    """The gate's verdict on one window of probe load, ended early once the new deployment has
    made more errors than the whole window may hold."""
    expected = round(probe.rate * window_s)
    certain: list[GateResult] = []

    def cut_short(so_far: WindowStats) -> bool:
        failure = early_failure(gates, so_far, expected_requests=expected)
        if failure is not None:
            certain.append(failure)
            logger.info("gate window cut short after %d of %d requests to %s", so_far.requests, expected, new)
        return failure is not None

    candidate, baseline = probe.measure(window_s, new, old, cut_short=cut_short)
    return certain[0] if certain else evaluate_gate(gates, candidate, baseline)
