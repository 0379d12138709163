"""Controlled rollouts on a real local runtime under steady load, with dag.test()."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG

from deployflow.loadtest import LoadResult, RequestSpec, Schedule, run_open_loop
from deployflow.local.client import LocalRuntimeClient
from deployflow.operators.rollout import RolloutOperator
from tests.airflow_support import connected_runtime, run_dag, task_states, xcom
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, deploy
from tests.runtime.users import UsersTraffic

pytestmark = pytest.mark.slow
QUICK_PLAN = {
    "steps": ["mirror 20% 3s", "traffic 10% 3s", "traffic 50% 3s", "traffic 100%"],
    "gates": {"min_requests": 20, "max_p99_ratio": 3.0},  # a tenth of the windows of the default plan: noisier
    "old_deployment_delete_after_s": 1,
    "bake_s": 3,
}
BAD_SCORE = {
    # Every third answer after the first few fails: the smoke test passes, real traffic would not.
    "errors": "\n_calls = 0\n_run = run\n\ndef run(raw_data):\n    global _calls\n    _calls += 1\n"
    '    if _calls > 3 and _calls % 3 == 0:\n        raise RuntimeError("model fails on this input")\n'
    "    return _run(raw_data)\n",
    "slow": "\nimport time as _time\n_run = run\n\ndef run(raw_data):\n"
    "    _time.sleep(0.05)\n    return _run(raw_data)\n",
    # Fails on single-row requests, which the package's sample (three rows) never sends: users do.
    "single-row": "\nimport json as _json\n_run = run\n\ndef run(raw_data):\n"
    "    if len(_json.loads(raw_data)['data']) == 1:\n        raise RuntimeError('fails on single-row requests')\n"
    "    return _run(raw_data)\n",
    # Never fails, answers every prediction 50 higher: its own samples say so, the current model disagrees.
    "shifted": "\n_run = run\n\ndef run(raw_data):\n    return [value + 50 for value in _run(raw_data)]\n",
}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    with connected_runtime(tmp_path_factory.mktemp("rollout") / "data") as runtime:
        yield runtime


@pytest.fixture
def client(runtime: RuntimeProcess) -> Iterator[LocalRuntimeClient]:
    with runtime.client() as client:
        client.register_model("diabetes", SAMPLE_MODEL)
        yield client


def serving_endpoint(client: LocalRuntimeClient, name: str) -> dict:
    client.put_endpoint(name, compute="production")
    deploy(client, name, "blue")
    return client.set_traffic(name, {"blue": 100})


class SteadyLoad:
    """Live traffic through the endpoint (no pin) while the rollout runs; its result when stopped."""

    def __init__(self, client: LocalRuntimeClient, endpoint: dict, rate: float, seconds: float) -> None:
        key = client.keys(endpoint["name"])["primary_key"]
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        request = RequestSpec(endpoint["scoring_uri"], body=(SAMPLE_MODEL / "sample-request.json").read_bytes(),
                              headers=headers)  # fmt: skip
        self.result: LoadResult | None = None
        self._thread = threading.Thread(
            target=lambda: setattr(self, "result", run_open_loop(request, Schedule.constant(rate, seconds)))
        )
        self._thread.start()

    def wait(self) -> LoadResult:
        self._thread.join()
        assert self.result is not None
        return self.result


def rollout_dag(endpoint: str, model: str, package: Path, plan: dict | None = None) -> DAG:
    with DAG(f"rollout_{endpoint}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        RolloutOperator(
            task_id="promote",
            endpoint_name=endpoint,
            deployment_name="green",
            model=model,
            package_path=str(package),
            instance_resources={"cpu": 0.5, "memory_gb": 1.0},
            instance_count=2,
            plan=plan or QUICK_PLAN,
            probe_rate=30,
        )
    return dag


def test_a_good_model_rolls_out_under_load_with_no_failed_request(client: LocalRuntimeClient) -> None:
    endpoint = serving_endpoint(client, "ro-good")
    load = SteadyLoad(client, endpoint, rate=40, seconds=25)

    dag_run = run_dag(rollout_dag("ro-good", "diabetes:1", SAMPLE_MODEL), retries=0)
    live = load.wait()

    assert task_states(dag_run) == {"promote": "success"}
    summary = xcom(dag_run, "promote")
    assert summary["status"] == "completed"
    assert [(d["step_index"], d["outcome"]) for d in summary["decisions"]] == [
        (0, "pass"), (1, "pass"), (2, "pass"), (3, "pass")
    ], "three gated steps and the bake at 100 %"  # fmt: skip
    after = client.get_endpoint("ro-good")
    assert after["traffic"] == {"green": 100} and after["mirror_traffic"] == {}
    assert after["scoring_uri"] == endpoint["scoring_uri"]
    assert [d["name"] for d in client.list_deployments("ro-good")] == ["green"]
    assert live.ok == live.scheduled == 1000, live.errors  # every live request answered, none failed


def bad_model(client: LocalRuntimeClient, tmp_path: Path, fault: str) -> tuple[str, Path]:
    """The sample model with one of BAD_SCORE's faults, registered: its reference and package."""
    bad = shutil.copytree(SAMPLE_MODEL, tmp_path / f"diabetes-{fault}", ignore=shutil.ignore_patterns("__pycache__"))
    (bad / "score.py").write_text((bad / "score.py").read_text() + BAD_SCORE[fault])
    if fault == "shifted":  # its own samples are its own answers: the smoke test passes
        expected = json.loads((bad / "sample-response.json").read_text())
        (bad / "sample-response.json").write_text(json.dumps([value + 50 for value in expected]))
    model = client.register_model(f"diabetes-{fault}", bad)
    return f"{model['name']}:{model['version']}", bad


@pytest.mark.parametrize("fault", ["errors", "slow"])
def test_a_bad_model_is_rolled_back_on_its_own_and_live_traffic_never_fails(
    client: LocalRuntimeClient, tmp_path: Path, fault: str
) -> None:
    model, bad = bad_model(client, tmp_path, fault)
    name = f"ro-{fault}"
    endpoint = serving_endpoint(client, name)
    load = SteadyLoad(client, endpoint, rate=40, seconds=12)

    dag_run = run_dag(rollout_dag(name, model, bad), retries=0)
    live = load.wait()

    assert task_states(dag_run) == {"promote": "failed"}
    summary = xcom(dag_run, "promote", key="rollout")
    assert summary["status"] == "rolled_back"
    assert summary["decisions"][-1]["outcome"] == "fail"
    assert summary["decisions"][-1]["step_index"] == 0  # caught while only mirrored
    after = client.get_endpoint(name)
    assert after["traffic"] == {"blue": 100} and after["mirror_traffic"] == {}
    assert [d["name"] for d in client.list_deployments(name)] == ["blue"]
    assert live.ok == live.scheduled, live.errors  # mirrored copies failed, no live request did


def test_errors_that_the_rest_of_a_window_cannot_undo_end_it_early(client: LocalRuntimeClient, tmp_path: Path) -> None:
    model, bad = bad_model(client, tmp_path, "errors")
    serving_endpoint(client, "ro-early")
    plan = {**QUICK_PLAN, "steps": ["mirror 20% 60s", "traffic 100%"]}  # 1,800 probe requests at 30/s

    dag_run = run_dag(rollout_dag("ro-early", model, bad, plan), retries=0)

    assert task_states(dag_run) == {"promote": "failed"}
    (decision,) = xcom(dag_run, "promote", key="rollout")["decisions"]
    assert decision["outcome"] == "fail"
    reason = " ".join(decision["reasons"])
    # the window's total is the rate so far over its whole minute: about 1,800 probe requests at 30/s
    assert "error rate cannot end within the limit" in reason and "still to come of" in reason
    assert client.get_endpoint("ro-early")["traffic"] == {"blue": 100}
    assert [d["name"] for d in client.list_deployments("ro-early")] == ["blue"]


def test_a_retried_rollout_resumes_from_the_traffic_it_finds(client: LocalRuntimeClient) -> None:
    serving_endpoint(client, "ro-resume")
    deploy(client, "ro-resume", "green", instance_count=2, resources={"cpu": 0.5, "memory_gb": 1.0})
    client.set_traffic("ro-resume", {"blue": 90, "green": 10})  # where an earlier try stopped

    dag_run = run_dag(rollout_dag("ro-resume", "diabetes:1", SAMPLE_MODEL), retries=0)

    assert task_states(dag_run) == {"promote": "success"}
    decisions = xcom(dag_run, "promote")["decisions"]
    assert [d["step_index"] for d in decisions] == [1, 2, 3]  # the mirror step is behind it: not redone; 3 is the bake
    assert client.get_endpoint("ro-resume")["traffic"] == {"green": 100}


def approval_dag(endpoint: str, answer: str) -> DAG:
    """promote stops at the approval step; a stand-in for the HITL task answers; the rollout goes on."""
    from airflow.providers.standard.operators.python import PythonOperator

    plan = {**QUICK_PLAN, "steps": ["traffic 10% 3s", "approve", "traffic 100%"]}
    common = {"endpoint_name": endpoint, "model": "diabetes:1", "package_path": str(SAMPLE_MODEL), "plan": plan,
              "approval": True, "probe_rate": 30, "instance_resources": {"cpu": 0.5, "memory_gb": 1.0}}  # fmt: skip
    with DAG(f"approval_{endpoint}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        promote = RolloutOperator(task_id="promote", **common)
        # The same value ApprovalOperator returns once a person answered in the UI.
        approve_promotion = PythonOperator(
            task_id="approve_promotion", python_callable=lambda: {"chosen_options": [answer], "params_input": {}}
        )
        continue_promotion = RolloutOperator(
            task_id="continue_promotion", approval_task_id="approve_promotion", resume_task_id="promote", **common
        )
        promote >> approve_promotion >> continue_promotion
    return dag


@pytest.mark.parametrize(("answer", "expected"), [("Approve", {"green": 100}), ("Reject", {"blue": 100})])
def test_an_approval_step_waits_for_the_answer_and_a_rejection_rolls_back(
    client: LocalRuntimeClient, answer: str, expected: dict[str, int]
) -> None:
    name = f"ro-{answer.lower()}"
    serving_endpoint(client, name)

    dag_run = run_dag(approval_dag(name, answer), retries=0)

    states = task_states(dag_run)
    assert states["promote"] == "success"
    paused = xcom(dag_run, "promote")
    assert paused["status"] == "awaiting_approval" and paused["new"] == "green"
    assert states["continue_promotion"] == ("success" if answer == "Approve" else "failed")
    assert client.get_endpoint(name)["traffic"] == expected


def test_a_model_failing_only_on_users_inputs_is_rolled_back_by_live_traffic(
    client: LocalRuntimeClient, tmp_path: Path
) -> None:
    model, bad = bad_model(client, tmp_path, "single-row")
    endpoint = serving_endpoint(client, "ro-live")
    rate, share, window = 20, 0.10, 10
    users = UsersTraffic(endpoint["scoring_uri"], client.keys("ro-live")["primary_key"], rate, seconds=35)
    plan = {"steps": [f"traffic 10% {window}s", f"traffic 50% {window}s", "traffic 100%"],
            "gates": {"min_requests": 10}, "bake_s": 3}  # fmt: skip

    dag_run = run_dag(rollout_dag("ro-live", model, bad, plan), retries=0)
    answers = users.wait()

    assert task_states(dag_run) == {"promote": "failed"}
    summary = xcom(dag_run, "promote", key="rollout")
    assert summary["status"] == "rolled_back"
    [decision] = summary["decisions"]
    assert (decision["step_index"], decision["outcome"]) == (0, "fail"), "stopped at the first 10 % step"
    record = json.loads(Path(summary["decision_record"]).read_text())
    assert record["windows"][-1]["source"] == "live", "judged on what users sent, not on the probe's samples"
    timeline = Path(summary["timeline_path"]).read_text()
    assert "<svg" in timeline and "rolled back" in timeline.lower(), "the promote task drew its timeline"
    assert record["windows"][-1]["new"]["errors_5xx"] > 0
    rolled_back = next(e for e in record["events"] if e["kind"] == "rollback")
    first_failure = min(t for t, status in answers if status >= 500)
    assert datetime.fromisoformat(rolled_back["at"]).timestamp() - first_failure <= window + 5
    after = client.get_endpoint("ro-live")
    assert after["traffic"] == {"blue": 100} and after["mirror_traffic"] == {}
    assert [d["name"] for d in client.list_deployments("ro-live")] == ["blue"], "the old one kept, the new removed"
    failed = sum(1 for _, status in answers if status >= 500 or status == 0)
    assert 0 < failed <= share * rate * window, f"{failed} users' requests failed"


def test_a_model_that_answers_otherwise_is_stopped_at_the_mirror_step_by_min_agreement(
    client: LocalRuntimeClient, tmp_path: Path
) -> None:
    model, shifted = bad_model(client, tmp_path, "shifted")
    serving_endpoint(client, "ro-agree")
    plan = {**QUICK_PLAN, "steps": ["mirror 20% 3s", "traffic 100%"], "gates": {**QUICK_PLAN["gates"],
            "min_agreement": 0.9}}  # fmt: skip

    dag_run = run_dag(rollout_dag("ro-agree", model, shifted, plan), retries=0)

    assert task_states(dag_run) == {"promote": "failed"}
    summary = xcom(dag_run, "promote", key="rollout")
    [decision] = summary["decisions"]
    assert (decision["step_index"], decision["outcome"]) == (0, "fail")
    assert any("minimum agreement of 90.00 %" in reason for reason in decision["reasons"]), decision["reasons"]
    window = json.loads(Path(summary["decision_record"]).read_text())["windows"][-1]
    assert window["agreement"]["agreed"] == 0 and window["agreement"]["disagreements"]
    assert "expected" in window["agreement"]["disagreements"][0]["detail"], "where the answers differ"
    assert client.get_endpoint("ro-agree")["traffic"] == {"blue": 100}


def test_users_mirrored_requests_that_answer_otherwise_are_shown_in_the_decision_record(
    client: LocalRuntimeClient, tmp_path: Path
) -> None:
    model, shifted = bad_model(client, tmp_path, "shifted")
    endpoint = serving_endpoint(client, "ro-agree-live")
    users = UsersTraffic(endpoint["scoring_uri"], client.keys("ro-agree-live")["primary_key"], 20)
    plan = {**QUICK_PLAN, "steps": ["mirror 50% 6s", "traffic 100%"],
            "gates": {**QUICK_PLAN["gates"], "min_agreement": 0.9, "min_requests": 10}}  # fmt: skip

    dag_run = run_dag(rollout_dag("ro-agree-live", model, shifted, plan), retries=0)
    users.stop()

    assert task_states(dag_run) == {"promote": "failed"}
    summary = xcom(dag_run, "promote", key="rollout")
    agreement = json.loads(Path(summary["decision_record"]).read_text())["windows"][-1]["agreement"]
    assert agreement["source"] == "users' mirrored requests"
    assert agreement["compared"] >= 10 and agreement["agreed"] == 0, agreement
    kept = agreement["disagreements"]
    assert 0 < len(kept) <= min(agreement["compared"], 10), "the window's own, as the router kept them"
    assert all(d["request_id"] and d["detail"] for d in kept), kept
    assert client.get_endpoint("ro-agree-live")["traffic"] == {"blue": 100}


def test_a_long_delay_before_deleting_the_old_deployment_is_waited_in_the_triggerer(client: LocalRuntimeClient) -> None:
    """From DEFER_DELETE_AT_LEAST_S on, the promote task defers (no worker slot held) and the old deployment
    stays, unrouted, until the delay is over; then it is deleted and the task succeeds."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    from deployflow.operators.rollout import DEFER_DELETE_AT_LEAST_S

    serving_endpoint(client, "ro-defer")
    delay = DEFER_DELETE_AT_LEAST_S
    plan = {**QUICK_PLAN, "steps": ["traffic 100%"], "bake_s": 0, "old_deployment_delete_after_s": delay}
    seen: list[tuple[float, str | None, bool, dict]] = []  # (time, promote's state, blue exists, traffic)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with create_session() as session:
                states = session.query(TaskInstance.state).filter(TaskInstance.dag_id == "rollout_ro-defer").all()
            names = {d["name"] for d in client.list_deployments("ro-defer")}
            traffic = client.get_endpoint("ro-defer")["traffic"]
            seen.append((time.monotonic(), str(states[0][0]) if states else None, "blue" in names, traffic))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        dag_run = run_dag(rollout_dag("ro-defer", "diabetes:1", SAMPLE_MODEL, plan), retries=0)
    finally:
        done.set()
        watcher.join()

    assert task_states(dag_run) == {"promote": "success"}
    assert [d["name"] for d in client.list_deployments("ro-defer")] == ["green"]
    switched = min(t for t, _, _, traffic in seen if traffic == {"green": 100})
    # dag.test() runs the trigger in line with the task instance back in "queued" (a triggerer: "deferred")
    waiting = [t for t, state, _, _ in seen if t > switched and state in ("deferred", "queued")]
    assert waiting, f"the task deferred after green took all traffic: {sorted({s for _, s, _, _ in seen})}"
    assert waiting[-1] - waiting[0] >= delay - 2, "the wait was the trigger's, not a sleep in a running task"
    kept = [t for t, _, blue, _ in seen if blue and t > switched]
    assert kept and max(kept) - switched >= delay - 1.5, f"blue was kept {max(kept, default=switched) - switched:.1f} s"
