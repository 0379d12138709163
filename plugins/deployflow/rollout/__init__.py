"""Rollout plan, gates and decisions: pure logic that knows nothing of Airflow or Azure."""

from deployflow.rollout.actions import Action, AskApproval, Finish, Observe, RollBack, SetTraffic
from deployflow.rollout.controller import Decision, Phase, RolloutState, RolloutStateError, next_action
from deployflow.rollout.gates import GateResult, GateSpec, Verdict, WindowStats, early_failure, evaluate_gate
from deployflow.rollout.plan import DEFAULT_PLAN_FILE, RolloutPlan, load_plan
from deployflow.rollout.steps import ApprovalStep, MirrorStep, RolloutPlanError, RolloutStep, TrafficStep, parse_step

__all__ = [
    "DEFAULT_PLAN_FILE",
    "Action",
    "ApprovalStep",
    "AskApproval",
    "Decision",
    "Finish",
    "GateResult",
    "GateSpec",
    "MirrorStep",
    "Observe",
    "Phase",
    "RollBack",
    "RolloutPlan",
    "RolloutPlanError",
    "RolloutState",
    "RolloutStateError",
    "RolloutStep",
    "SetTraffic",
    "TrafficStep",
    "Verdict",
    "WindowStats",
    "early_failure",
    "evaluate_gate",
    "load_plan",
    "next_action",
    "parse_step",
]
