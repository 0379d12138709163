"""The approval's deadline and the words a rejection is reported in (the real path runs in tests/real_airflow)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException

from deployflow.operators.approval import RolloutApprovalOperator, approval_timeout, duration_text
from deployflow.operators.rollout import rejection_reason


def test_the_run_sets_the_timeout_in_minutes_and_a_plan_steps_own_timeout_wins() -> None:
    assert approval_timeout(1440) == timedelta(days=1)
    assert approval_timeout("0.25") == timedelta(seconds=15), "a templated Param may arrive as text"
    assert approval_timeout(1440, step_timeout_s=600) == timedelta(minutes=10)


@pytest.mark.parametrize("minutes", [0, -5, "a day", None, float("inf")])
def test_a_timeout_that_is_not_a_positive_number_of_minutes_fails_saying_what_to_give(minutes: object) -> None:
    with pytest.raises(AirflowFailException, match="approval_timeout_minutes must be a number of minutes above 0"):
        approval_timeout(minutes)


def test_durations_read_as_a_person_writes_them() -> None:
    assert duration_text(timedelta(days=1)) == "24 h"
    assert duration_text(timedelta(minutes=90)) == "1 h 30 min"
    assert duration_text(timedelta(seconds=15)) == "15 s"


def test_a_timeout_is_always_a_rejection() -> None:
    operator = RolloutApprovalOperator(task_id="approve", subject="Promote?", body="x")
    assert operator.defaults == ["Reject"] and operator.options == ["Approve", "Reject"]
    with pytest.raises(ValueError, match="defaults is set by RolloutApprovalOperator"):
        RolloutApprovalOperator(task_id="approve2", subject="Promote?", defaults="Approve")


def test_the_reason_names_the_person_or_says_nobody_answered_in_time() -> None:
    timed_out = {"chosen_options": ["Reject"], "responded_by_user": None, "timed_out": True, "timeout_s": 900.0}
    assert rejection_reason(timed_out) == (
        "timed out: nobody answered the approval within 15 min, so it was rejected by default"
    )
    person = {"chosen_options": ["Reject"], "responded_by_user": {"id": "admin", "name": "admin"}, "timed_out": False}
    assert rejection_reason(person) == "rejected by admin"
