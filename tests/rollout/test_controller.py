from __future__ import annotations

import json

import pytest

from deployflow.rollout import (
    AskApproval,
    Finish,
    GateResult,
    Observe,
    Phase,
    RollBack,
    RolloutPlan,
    RolloutState,
    RolloutStateError,
    SetTraffic,
    Verdict,
    next_action,
)

PLAN = RolloutPlan.from_text(
    ["mirror 20% 60s", "traffic 10% 60s", "approve timeout 1h", "traffic 50% 60s", "traffic 100%"],
    old_deployment_delete_after_s=60,
)
PASS = GateResult(Verdict.PASS, ("green: error rate 0.00 % is within the limit of 1.00 %",))
FAIL = GateResult(Verdict.FAIL, ("green: p99 latency 2000.0 ms is above the limit of 1000.0 ms",))
UNSURE = GateResult(Verdict.INCONCLUSIVE, ("green: only 3 requests, fewer than the 50 needed for a verdict",))


def act(state, traffic, mirror=None):
    return next_action(state, traffic, mirror or {}, "green", "blue", endpoint="diabetes")


def passed(*indices, plan=PLAN):
    """A state whose history passed these steps, gates and approvals alike."""
    state = RolloutState(plan)
    for i in indices:
        state = state.record_approval(i, True) if i == 2 else state.record_gate(i, PASS)
    return state


def test_fresh_start_mirrors_first():
    action = act(RolloutState(PLAN), {"blue": 100})
    assert action == SetTraffic(
        {"blue": 100, "green": 0},
        {"green": 20},
        0,
        "endpoint diabetes: traffic {blue: 100, green: 0}, mirror {green: 20} (step 1/5: mirror 20 % for 60 s)",
    )


def test_walks_every_step_in_order_and_logs_each_traffic_change():
    state, traffic, mirror, seen = RolloutState(PLAN), {"blue": 100}, {}, []
    for _ in range(20):
        action = act(state, traffic, mirror)
        seen.append((type(action).__name__, getattr(action, "step_index", None)))
        if isinstance(action, SetTraffic):
            traffic, mirror = action.traffic, action.mirror
        elif isinstance(action, Observe):
            assert action.window_s == 60
            state = state.record_gate(action.step_index, PASS)
        elif isinstance(action, AskApproval):
            assert action.timeout_s == 3600
            state = state.record_approval(action.step_index, True, "approved by ops")
        else:
            break
    assert seen == [
        ("SetTraffic", 0),
        ("Observe", 0),
        ("SetTraffic", 1),
        ("Observe", 1),
        ("AskApproval", 2),
        ("SetTraffic", 3),
        ("Observe", 3),
        ("SetTraffic", 4),
        ("Finish", None),
    ]
    assert action == Finish(
        "blue", 60, "endpoint diabetes: green holds all traffic (step 5/5: traffic 100 %); deleting blue in 60 s"
    )
    assert act(passed(0), {"blue": 100}, {"green": 20}).line == (
        "endpoint diabetes: traffic {blue: 90, green: 10} (step 2/5: traffic 10 % for 60 s)"
    )


def test_observe_and_approval_lines():
    observe = act(passed(0), {"blue": 90, "green": 10})
    assert observe.line == "endpoint diabetes: observing green against blue for 60 s (step 2/5: traffic 10 % for 60 s)"
    ask = act(passed(0, 1), {"blue": 90, "green": 10})
    assert isinstance(ask, AskApproval) and ask.step_index == 2
    assert ask.question == "Continue rolling out green on endpoint diabetes? Traffic is {blue: 90, green: 10}."


@pytest.mark.parametrize("failing_step", [0, 1, 3])
def test_a_failing_gate_rolls_back_whatever_the_endpoint_shows(failing_step):
    state = passed(*range(failing_step)).record_gate(failing_step, FAIL)
    assert state.phase is Phase.ROLLING_BACK
    for traffic, mirror in [({"blue": 50, "green": 50}, {}), ({"blue": 100}, {}), ({"purple": 100}, {})]:
        action = act(state, traffic, mirror)
        assert isinstance(action, RollBack)
        assert (action.traffic, action.mirror, action.reasons) == ({"blue": 100, "green": 0}, {}, FAIL.reasons)
    step = PLAN.steps[failing_step].describe()
    assert action.line == (
        "endpoint diabetes: rolling back to traffic {blue: 100, green: 0}, no mirror — gate fail "
        f"(step {failing_step + 1}/5: {step}): green: p99 latency 2000.0 ms is above the limit of 1000.0 ms"
    )


def test_a_refused_or_unanswered_approval_rolls_back():
    state = passed(0, 1).record_approval(2, False, "no answer within 3600 s")
    action = act(state, {"blue": 90, "green": 10})
    assert isinstance(action, RollBack)
    assert "approval refused (step 3/5: pause for approval (up to 3600 s)): no answer within 3600 s" in action.line


def test_inconclusive_is_held_then_put_to_a_person():
    state = passed(0).record_gate(1, UNSURE)
    at_10 = {"blue": 90, "green": 10}
    for window in (2, 3):
        action = act(state, at_10)
        assert isinstance(action, Observe) and action.step_index == 1
        assert "gate inconclusive (green: only 3 requests" in action.line
        assert f"observing window {window} of up to 3" in action.line
        state = state.record_gate(1, UNSURE)
    action = act(state, at_10)
    assert isinstance(action, AskApproval) and (action.step_index, action.timeout_s) == (1, None)
    assert "stayed inconclusive after 3 window(s)" in action.question
    action = act(state.record_approval(1, True), at_10)
    assert isinstance(action, AskApproval) and action.step_index == 2  # on to the plan's own approval step


@pytest.mark.parametrize(("policy", "expected"), [("ask", AskApproval), ("rollback", RollBack)])
def test_inconclusive_policy_ask_or_roll_back(policy, expected):
    plan = PLAN.override({"on_inconclusive": policy})
    state = passed(0, plan=plan).record_gate(1, UNSURE)
    assert isinstance(act(state, {"blue": 90, "green": 10}), expected)


# (observed traffic, observed mirror) -> (action, step index), from a state with no history, as after a retry
@pytest.mark.parametrize(
    ("traffic", "mirror", "kind", "step"),
    [
        ({"blue": 100}, {}, SetTraffic, 0),  # not started
        ({"blue": 100, "green": 0}, {"green": 20}, Observe, 0),  # at the mirror step
        ({"blue": 90, "green": 10}, {}, Observe, 1),  # the example: observe 10 % again
        ({"blue": 50, "green": 50}, {}, Observe, 3),
        ({"green": 100}, {}, Finish, None),  # old already deleted, or not yet
        ({"blue": 100}, {"green": 10}, SetTraffic, 0),  # mirror below the first step: on to it
        ({"blue": 100}, {"green": 40}, SetTraffic, 0),  # mirror between steps: back to 20 %
        ({"blue": 70, "green": 30}, {}, SetTraffic, 1),  # between 10 % and 50 %: back to 10 %
        ({"blue": 10, "green": 90}, {}, SetTraffic, 3),  # between 50 % and 100 %: back to 50 %
        ({"blue": 90, "green": 10}, {"green": 20}, SetTraffic, 1),  # live and mirror at once: back to 10 % alone
    ],
)
def test_resumes_from_the_observed_traffic(traffic, mirror, kind, step):
    action = act(RolloutState(PLAN), traffic, mirror)
    assert isinstance(action, kind)
    assert getattr(action, "step_index", None) == step


def test_between_steps_the_line_says_what_was_found():
    action = act(RolloutState(PLAN), {"blue": 70, "green": 30})
    assert action == SetTraffic(
        {"blue": 90, "green": 10},
        {},
        1,
        "endpoint diabetes: found traffic {blue: 70, green: 30}, which matches no step; back to "
        "traffic {blue: 90, green: 10} (step 2/5: traffic 10 % for 60 s)",
    )


@pytest.mark.parametrize(
    ("history", "traffic", "mirror", "kind", "step"),
    [
        ((0,), {"blue": 100}, {"green": 20}, SetTraffic, 1),  # mirror passed: on to 10 %
        ((0, 1), {"blue": 90, "green": 10}, {}, AskApproval, 2),
        ((0, 1, 2), {"blue": 90, "green": 10}, {}, SetTraffic, 3),
        ((0, 1, 2), {"blue": 50, "green": 50}, {}, Observe, 3),  # applied, then the task died
        ((0, 1, 2, 3), {"blue": 50, "green": 50}, {}, SetTraffic, 4),
        ((0, 1, 2, 3), {"green": 100}, {}, Finish, None),
        ((0, 1, 2), {"blue": 100}, {}, SetTraffic, 3),  # moved back outside the rollout: restore
        ((0,), {"blue": 10, "green": 90}, {}, SetTraffic, 3),  # pushed ahead: down to the closest step below
    ],
)
def test_resumes_from_recorded_decisions_and_observed_traffic(history, traffic, mirror, kind, step):
    action = act(passed(*history), traffic, mirror)
    assert isinstance(action, kind)
    assert getattr(action, "step_index", None) == step


def test_restoring_traffic_moved_outside_the_rollout_says_so():
    action = act(passed(0, 1, 2), {"blue": 100})
    assert action.line.startswith(
        "endpoint diabetes: found traffic {blue: 100, green: 0}, behind the gates already passed; restoring "
        "traffic {blue: 50, green: 50}"
    )


@pytest.mark.parametrize(
    ("traffic", "mirror", "message"),
    [
        ({"blue": 80, "purple": 20}, {}, r"deployment\(s\) \{purple: 20\} hold traffic besides blue and green"),
        ({"blue": 100}, {"purple": 10}, r"\{purple: 10\} hold traffic"),
        ({"blue": 100}, {"blue": 10}, r"mirrored to the current deployment blue"),
        ({"blue": 0, "green": 0}, {}, r"\{blue: 0, green: 0\} sums to 0, not 100; give blue all traffic"),
        ({}, {}, r"sums to 0, not 100"),
    ],
)
def test_traffic_the_rollout_did_not_make_is_left_alone(traffic, mirror, message):
    with pytest.raises(RolloutStateError, match=message):
        act(RolloutState(PLAN), traffic, mirror)


def test_new_and_old_must_differ():
    with pytest.raises(ValueError, match="both named 'blue'"):
        next_action(RolloutState(PLAN), {"blue": 100}, {}, "blue", "blue", endpoint="diabetes")


def test_a_final_step_with_a_window_is_observed_before_finishing():
    plan = RolloutPlan.from_text(["traffic 50% 30s", "traffic 100% 30s"])
    state = RolloutState(plan).record_gate(0, PASS)
    assert isinstance(act(state, {"green": 100}), Observe)
    assert isinstance(act(state.record_gate(1, PASS), {"green": 100}), Finish)
    assert isinstance(act(state.record_gate(1, PASS), {"blue": 50, "green": 50}), SetTraffic)


def test_without_mirror_starts_with_live_traffic():
    action = act(RolloutState(PLAN.without_mirror()), {"blue": 100})
    assert (action.traffic, action.mirror) == ({"blue": 90, "green": 10}, {})


def test_state_round_trips_through_json_for_xcom():
    state = passed(0, 1, 2).record_gate(3, UNSURE)
    again = RolloutState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    assert (again.step_index, again.phase) == (3, Phase.RUNNING)


def test_recording_a_step_the_plan_lacks_is_refused():
    with pytest.raises(ValueError, match="the plan has steps 0-4, got step index 5"):
        RolloutState(PLAN).record_gate(5, PASS)


def test_a_resumed_rollout_moves_on_after_the_step_it_found_instead_of_judging_it_again():
    """Found at 10 % with no history: observe that step once, then go on to 50 % (the mirror step is behind)."""
    plan = RolloutPlan.from_text(["mirror 20% 60s", "traffic 10% 60s", "traffic 50% 60s", "traffic 100%"])
    state = RolloutState(plan)
    observe = act(state, {"blue": 90, "green": 10})
    assert isinstance(observe, Observe) and observe.step_index == 1
    state = state.record_gate(1, PASS)
    following = act(state, {"blue": 90, "green": 10})
    assert isinstance(following, SetTraffic)
    assert (following.step_index, following.traffic) == (2, {"blue": 50, "green": 50})


def test_a_dry_runs_unjudged_gate_moves_the_rollout_on_as_a_pass_would_and_is_kept_as_such():
    from deployflow.rollout.ledger import Ledger

    not_judged = GateResult(Verdict.NOT_JUDGED, ("not judged (dry run): no probe traffic sent",))
    state = RolloutState(PLAN).record_gate(0, not_judged)
    assert state.phase is Phase.RUNNING and state.step_index == 1
    assert act(state, {"blue": 100}, {"green": 20}) == act(passed(0), {"blue": 100}, {"green": 20})
    ledger = Ledger("realtime_deployment/dry", "green", "blue", "diabetes:2", state.history)
    assert Ledger.decode(ledger.encode()).decisions[0].outcome == "not judged"
