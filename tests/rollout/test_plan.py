from __future__ import annotations

import json

import pytest

from deployflow.rollout import (
    DEFAULT_PLAN_FILE,
    ApprovalStep,
    GateSpec,
    MirrorStep,
    RolloutPlan,
    RolloutPlanError,
    TrafficStep,
    load_plan,
    parse_step,
)

TEXT = ["mirror 20% 60s", "traffic 10% 60s", "approve", "traffic 50% 2m", "traffic 100%"]
STEPS = (MirrorStep(20, 60), TrafficStep(10, 60), ApprovalStep(), TrafficStep(50, 120), TrafficStep(100))


def test_text_form_reads_each_kind_of_step():
    assert RolloutPlan.from_text(TEXT).steps == STEPS


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("mirror 20 % for 60 s", MirrorStep(20, 60)),
        ("  Traffic   10%   for 1.5m ", TrafficStep(10, 90)),
        ("traffic 100 %", TrafficStep(100)),
        ("pause for approval", ApprovalStep()),
        ("approve timeout 1h", ApprovalStep(3600)),
        ("pause for approval up to 30 minutes", ApprovalStep(1800)),
        ({"type": "mirror", "percent": 5, "duration_s": 30}, MirrorStep(5, 30)),
        ({"type": "approval", "timeout_s": 600}, ApprovalStep(600)),
    ],
)
def test_step_spellings(text, step):
    assert parse_step(text) == step


def test_dict_form_with_dict_steps_and_gates():
    plan = RolloutPlan.from_dict(
        {
            "steps": [s.to_dict() for s in STEPS],
            "gates": {"max_error_rate": 0.02, "max_p99_ms": 800, "min_requests": 10},
            "old_deployment_delete_after_s": 0,
            "on_inconclusive": "ask",
        }
    )
    assert plan.steps == STEPS
    assert plan.gates == GateSpec(max_error_rate=0.02, max_p99_ms=800, min_requests=10)
    assert (plan.old_deployment_delete_after_s, plan.on_inconclusive) == (0, "ask")


def test_to_dict_round_trips_through_json_and_text():
    plan = RolloutPlan.from_text(TEXT, gates={"max_p95_ratio": 1.2}, max_inconclusive_windows=2)
    assert RolloutPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert RolloutPlan.from_text(plan.to_text(), **{k: v for k, v in plan.to_dict().items() if k != "steps"}) == plan


def test_default_plan_file():
    plan = load_plan()
    assert DEFAULT_PLAN_FILE.parts[-3:] == ("include", "rollout", "default_plan.json")
    assert plan.steps == (MirrorStep(20, 30), TrafficStep(10, 30), TrafficStep(50, 30), TrafficStep(100))
    assert plan.gates == GateSpec(max_error_rate=0.01, max_p99_ratio=1.5, max_p99_ms=1000, min_requests=50)
    assert (plan.old_deployment_delete_after_s, plan.bake_s, plan.gate_source) == (0, 30, "auto")


def test_a_run_overrides_the_default_plan_key_by_key():
    plan = load_plan().override({"steps": ["traffic 100%"], "gates": {"max_p99_ms": 250}})
    assert plan.steps == (TrafficStep(100),)
    assert (plan.gates.max_p99_ms, plan.gates.max_p99_ratio, plan.gates.min_requests) == (250, 1.5, 50)


def test_without_mirror_drops_mirror_steps_for_kubernetes_endpoints():
    assert RolloutPlan.from_text(TEXT).without_mirror().steps == STEPS[1:]


def test_load_plan_names_the_file_it_cannot_use(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text('{"steps": ["traffic 50% 60s"]}')
    with pytest.raises(RolloutPlanError, match=r"plan\.json: .*last step must be 'traffic 100%'"):
        load_plan(bad)
    bad.write_text("{not json")
    with pytest.raises(RolloutPlanError, match="cannot read the rollout plan"):
        load_plan(bad)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([], r"at least one step"),
        (["traffic 120%"], r"step 1: traffic must be a whole percentage from 1 to 100, got 120"),
        (["traffic 0% 60s", "traffic 100%"], r"step 1: traffic must be a whole percentage from 1 to 100, got 0"),
        (["traffic 10.5% 60s", "traffic 100%"], r"whole number, got '10.5%'"),
        (["mirror 60% 60s", "traffic 100%"], r"mirror must be .* 1 to 50 \(Azure ML mirrors at most 50 %\), got 60"),
        (["mirror 20%", "traffic 100%"], r"'mirror 20%' needs a window for its gate"),
        (["traffic 50% 60s", "traffic 10% 60s", "traffic 100%"], r"step 2 .*must not fall from 50 % to 10 %"),
        (["mirror 20% 60s", "mirror 10% 60s", "traffic 100%"], r"mirroring must not fall from 20 % to 10 %"),
        (["traffic 10% 60s", "mirror 20% 60s", "traffic 100%"], r"step 2 .*put mirror steps before"),
        (["traffic 10% 60s", "traffic 50% 60s"], r"last step must be 'traffic 100%'.*got 'traffic 50% 60s'"),
        (["traffic 10% 60s", "traffic 100%", "approve"], r"last step must be 'traffic 100%'"),
        (["traffic 10%", "traffic 100%"], r"step 1 \(traffic 10%\) needs a window.*'traffic 10% 60s'"),
        (["traffic 10% 0s", "traffic 100%"], r"traffic duration must be a number of seconds > 0, got 0"),
        (["traffic 10% 60", "traffic 100%"], r"cannot read the duration '60'; write it with a unit"),
        (["approve timeout 0s", "traffic 100%"], r"approval timeout must be .* > 0"),
        (["trafic 10% 60s", "traffic 100%"], r"step 1: cannot read the step 'trafic 10% 60s'; write e.g."),
        ([{"type": "canary", "percent": 5}, "traffic 100%"], r"'type' must be one of mirror, traffic, approval"),
        ([{"type": "traffic", "percent": 5, "window": 3}], r"unknown key\(s\) window"),
        ([{"type": "mirror", "percent": 5}, "traffic 100%"], r"mirror step .* needs 'duration_s'"),
        ([{"type": "traffic", "percent": True}], r"traffic must be a whole percentage .* got True"),
        ([42], r"a step is a string such as"),
        ("traffic 100%", r"'steps' must be a list"),
    ],
)
def test_each_invalid_plan_says_what_to_fix(steps, message):
    with pytest.raises(RolloutPlanError, match=message):
        RolloutPlan.from_dict({"steps": steps})


def test_every_problem_is_reported_at_once():
    with pytest.raises(RolloutPlanError) as info:
        RolloutPlan.from_dict({"steps": ["traffic 500% 60s", "mirror 90% 1s"], "gates": {"max_p99_ms": -1}})
    assert "step 1: traffic" in str(info.value)
    assert "step 2: mirror" in str(info.value)
    assert "max_p99_ms must be a number of ms > 0" in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"old_deployment_delete_after_s": -5}, r"old_deployment_delete_after_s must be .* >= 0, got -5"),
        ({"on_inconclusive": "retry"}, r"on_inconclusive must be one of hold, ask, rollback, got 'retry'"),
        ({"max_inconclusive_windows": 0}, r"max_inconclusive_windows must be a whole number >= 1"),
        ({"step": []}, r"unknown key\(s\) step; known keys are"),
        ({"gates": {"max_error": 0.1}}, r"unknown key\(s\) max_error"),
        ({"gates": {"max_error_rate": 5}}, r"max_error_rate is a fraction from 0 to 1 \(0.01 is 1 %\), got 5"),
        ({"gates": {"max_p99_ratio": 0.8}}, r"max_p99_ratio must be >= 1"),
        ({"gates": {"min_requests": 0}}, r"min_requests must be a whole number >= 1"),
    ],
)
def test_invalid_plan_options(options, message):
    with pytest.raises(RolloutPlanError, match=message):
        RolloutPlan.from_dict({"steps": ["traffic 100%"], **options})
