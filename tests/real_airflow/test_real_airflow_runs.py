"""What only a real deployment shows: overlapping runs, a human's answer, a killed task, the triggerer."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.real_airflow import RealAirflow

pytestmark = pytest.mark.slow

_HEARTBEAT_LOST = "Detected a task instance without a heartbeat"


def test_two_runs_of_a_dag_overlap_in_time(airflow: RealAirflow) -> None:
    first, second = airflow.trigger("overlap"), airflow.trigger("overlap")
    airflow.wait_for("overlap", first, {"success"}, timeout=60)
    airflow.wait_for("overlap", second, {"success"}, timeout=60)

    a, b = (airflow.task_instances("overlap", run)["nap"] for run in (first, second))
    assert _at(a["start_date"]) < _at(b["end_date"]) and _at(b["start_date"]) < _at(a["end_date"]), (a, b)


def test_approval_answered_through_the_rest_api_runs_or_skips_the_release(airflow: RealAirflow) -> None:
    approved, rejected = (airflow.trigger("approval", {"model": model}) for model in ("diabetes:2", "diabetes:3"))
    for run in (approved, rejected):
        airflow.wait_for_task("approval", run, "gate", {"awaiting_input"}, timeout=60)

    asked = airflow.hitl_details("approval", approved, "gate")
    assert asked["subject"] == "Release diabetes:2?"
    assert asked["options"] == ["Approve", "Reject"] and asked["response_received"] is False

    answer = airflow.answer_hitl("approval", approved, "gate", ["Approve"])
    assert answer["chosen_options"] == ["Approve"] and answer["responded_by"]["name"] == "admin"
    airflow.answer_hitl("approval", rejected, "gate", ["Reject"])

    airflow.wait_for("approval", approved, {"success"}, timeout=60)
    airflow.wait_for("approval", rejected, {"success"}, timeout=60)
    assert _states(airflow, "approval", approved) == {"gate": "success", "release": "success"}
    assert _states(airflow, "approval", rejected) == {"gate": "success", "release": "skipped"}
    assert airflow.hitl_details("approval", rejected, "gate")["chosen_options"] == ["Reject"]


@pytest.mark.parametrize("with_supervisor", [False, True], ids=["task", "task-and-supervisor"])
def test_a_task_killed_mid_sleep_fails_its_try_and_the_retry_succeeds(
    airflow: RealAirflow, tmp_path: Path, with_supervisor: bool
) -> None:
    tries_file = tmp_path / "tries"
    run = airflow.trigger("killed", {"tries_file": str(tries_file), "sleep_s": 6})
    airflow.wait_for_task("killed", run, "sleepy", {"running"}, timeout=60)
    _wait_until(lambda: tries_file.exists() and tries_file.read_text() == "1\n")  # into its sleep

    pid = airflow.kill_task("killed", run, "sleepy", with_supervisor=with_supervisor)

    airflow.wait_for("killed", run, {"success"}, timeout=90)
    ti = airflow.task_instances("killed", run)["sleepy"]
    assert ti["try_number"] == 2 and ti["pid"] != pid
    assert tries_file.read_text() == "1\n2\n"
    tries = airflow.task_tries("killed", run, "sleepy")
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed"), (2, "success")]
    # Who found the death: the supervisor, at once, or (when it died too) the scheduler's heartbeat timeout.
    timed_out = [line for line in airflow.log_path("scheduler").read_text().splitlines() if _HEARTBEAT_LOST in line]
    assert any(run in line for line in timed_out) == with_supervisor


def test_a_deferrable_sensor_waits_in_the_triggerer_and_completes(airflow: RealAirflow) -> None:
    run = airflow.trigger("deferred")
    waiting = airflow.wait_for_task("deferred", run, "wait", {"deferred"}, timeout=60)
    assert waiting["trigger"]["classpath"] == "airflow.providers.standard.triggers.temporal.DateTimeTrigger"
    _wait_until(
        lambda: (
            (airflow.task_instances("deferred", run)["wait"]["triggerer_job"] or {}).get("job_type") == "TriggererJob"
        )
    )

    airflow.wait_for("deferred", run, {"success"}, timeout=60)
    assert _states(airflow, "deferred", run) == {"wait": "success", "after": "success"}


def _states(airflow: RealAirflow, dag_id: str, run_id: str) -> dict[str, str]:
    return {task_id: ti["state"] for task_id, ti in airflow.task_instances(dag_id, run_id).items()}


def _at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def _wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)
