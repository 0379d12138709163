"""The real-time DAG in a real Airflow, as its users meet it: runs side by side, a person's answer, a killed task.

One Airflow deployment parses the repository's ``dags/`` and talks to one real local runtime.
Five production endpoints start as a user's would: ``blue`` serving the sample model at 100 %.
The ``story`` fixture triggers the runs together and plays the people and the accidents in
the order they come: a SIGKILL of a promote task at 50/50, an Approve, a Reject, an
approval marked failed in the UI and one nobody answers. Each test then checks what one of
them left behind.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from deployflow.local.client import LocalRuntimeClient, RuntimeClientError
from deployflow.platform.claims import CLAIM_TAG
from deployflow.rollout.ledger import ROLLOUT_TAG, Ledger
from tests.airflow_support import DAGS_FOLDER, local_connection
from tests.flows.test_realtime_deployment import QUICK, second_version  # noqa: F401 - a module fixture
from tests.real_airflow import RealAirflow
from tests.runtime.support import ENV_CACHE, SAMPLE_MODEL, RuntimeProcess

pytestmark = pytest.mark.slow

# the tasks a run goes through before it holds its endpoint: checked, validated, then the claim
BEFORE_THE_CLAIM = {"preflight", "validate", "claim_endpoint"}
DAG_ID = "realtime_deployment"
APPROVED, REJECTED, FAILED_APPROVAL, KILLED = "e2e-approved", "e2e-rejected", "e2e-unanswered", "e2e-killed"
TIMED_OUT = "e2e-timed-out"
#: the endpoints' names by the run that promotes to them; the third run shares APPROVED's
ENDPOINTS = {"approved": APPROVED, "rejected": REJECTED, "failed_approval": FAILED_APPROVAL, "killed": KILLED,
             "timed_out": TIMED_OUT}  # fmt: skip
ASKING = ("approved", "rejected", "failed_approval", "timed_out")
#: the timed-out run's approval_timeout_minutes: 15 s, well after the task is parked (see _parked)
APPROVAL_TIMEOUT_MIN = 0.25
# The gates judge errors only: latency on a 2-core machine shared with other test suites is noise
# here (a 4 s p99 was seen), and what is under test is the approval, the claim and the resume.
ERRORS_ONLY = {**QUICK["rollout_plan"]["gates"], "max_p99_ms": 60_000, "max_p99_ratio": 100.0}
APPROVAL_PLAN = {**QUICK["rollout_plan"], "steps": ["traffic 10% 3s", "approve", "traffic 100%"], "gates": ERRORS_ONLY}
UNANSWERED = {"approval": True, "rollout_plan": APPROVAL_PLAN, "approval_timeout_minutes": APPROVAL_TIMEOUT_MIN}
# Long enough at 50 % to be killed in, short enough that the retry's window (judged again) is cheap.
KILL_PLAN = {**QUICK["rollout_plan"], "steps": ["traffic 50% 20s", "traffic 100%"], "gates": ERRORS_ONLY}
# One profile candidate: the profile is not under test here, and each candidate costs every run a deployment.
ONE_CANDIDATE = {"candidates": QUICK["candidates"][-1:]}
# Five runs' stress tests at once beside the rest of the suite: a 3 s stress test's p99 (its slowest
# request or so) passed 200 ms there. The stress test is not under test here either: latency loosened.
LOOSE_SLO = {"slo": {**QUICK["slo"], "latency_ms": 5_000}}
NO_SUCH_GPU = {"cpu": 1, "memory_gb": 1, "gpu": 1}
STORY_TIMEOUT_S = 480
RUN_TIMEOUT_S = 300
POLL_S = 1.0


@dataclass
class Story:
    """What the people saw when they acted: kept for the tests, which look only after the fact."""

    runs: dict[str, str]
    before: dict[str, dict[str, Any]]
    asked: dict[str, dict[str, Any]] = field(default_factory=dict)
    traffic_when_asked: dict[str, dict[str, int]] = field(default_factory=dict)
    third_when_first_asked: dict[str, str | None] = field(default_factory=dict)
    test_endpoint_when_first_asked: bool = True
    #: the third run's tasks that had a state, besides those up to claim_endpoint, before the first run ended
    third_began_early: set[str] = field(default_factory=set)
    approved_endpoint_when_done: tuple[dict[str, Any], list[tuple[str, str]]] | None = None
    ledger_when_killed: Ledger | None = None
    killed_pid: int = 0


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    runtime = RuntimeProcess(tmp_path_factory.mktemp("e2e-runtime") / "data")
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def client(runtime: RuntimeProcess) -> Iterator[LocalRuntimeClient]:
    with runtime.client() as client:
        yield client


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, runtime: RuntimeProcess) -> Iterator[RealAirflow]:
    reports = tmp_path_factory.mktemp("e2e-reports")
    with local_connection(runtime) as conn_id:
        variable = f"AIRFLOW_CONN_{conn_id.upper()}"
        env = {
            variable: os.environ[variable],
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "3",
            # the batch DAG of the same folder would start a scheduled run: only the DAG under test runs
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # the DAG files do not change: parsed once, not every 10 s on a busy 2-core machine
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "DEPLOYFLOW_ENV_CACHE": str(ENV_CACHE),
            # the scheduler's sweep of approvals past their deadline: every 2 s, not 15
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
            "DEPLOYFLOW_REPORTS_DIR": str(reports),
        }
        with RealAirflow(tmp_path_factory.mktemp("e2e-airflow") / "home", DAGS_FOLDER, env=env) as deployment:
            deployment.request("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
            yield deployment


@pytest.fixture(scope="module")
def production(client: LocalRuntimeClient, second_version: Path) -> list[str]:  # noqa: F811
    """The five endpoints, each with a ``blue`` deployment of diabetes:1 on its way; their names.

    Asked for before Airflow starts, so the blue replicas come up while it does.
    """
    client.register_model("diabetes", SAMPLE_MODEL, version="1")
    client.register_model("diabetes", second_version, version="2")  # every run then registers it as diabetes:2
    for endpoint in ENDPOINTS.values():
        client.put_endpoint(endpoint, compute="production")
        client.put_deployment(endpoint, "blue", model="diabetes:1")
    return list(ENDPOINTS.values())


@pytest.fixture(scope="module")
def story(
    production: list[str],
    airflow: RealAirflow,
    client: LocalRuntimeClient,
    second_version: Path,  # noqa: F811
) -> Story:
    """Production serving (blue at 100 %), trigger the runs together, act as the people and the accidents would."""
    for endpoint in production:
        serving = client.wait_for_deployment(endpoint, "blue", timeout_s=300)
        assert serving["provisioning_state"] == "Succeeded", serving["error"]
        client.set_traffic(endpoint, {"blue": 100})
    before = {endpoint: client.get_endpoint(endpoint) for endpoint in production}

    new_version = {**QUICK, **ONE_CANDIDATE, **LOOSE_SLO, "package_path": str(second_version)}
    runs = {
        "killed": airflow.trigger(DAG_ID, {**new_version, "endpoint_name": KILLED, "rollout_plan": KILL_PLAN}),
        "approved": airflow.trigger(
            DAG_ID, {**new_version, "endpoint_name": APPROVED, "approval": True, "rollout_plan": APPROVAL_PLAN}
        ),
        "rejected": airflow.trigger(
            DAG_ID, {**new_version, "endpoint_name": REJECTED, "approval": True, "rollout_plan": APPROVAL_PLAN}
        ),
        "failed_approval": airflow.trigger(
            DAG_ID, {**new_version, "endpoint_name": FAILED_APPROVAL, "approval": True, "rollout_plan": APPROVAL_PLAN}
        ),
        "timed_out": airflow.trigger(DAG_ID, {**new_version, **UNANSWERED, "endpoint_name": TIMED_OUT}),
    }
    told = Story(runs, before)
    waiting = {"killed", *ASKING}
    _wait_for_claim(airflow, runs["approved"])
    # right after the first claimed the endpoint, for the same endpoint; refused at its test deployment
    # (a GPU the runtime has not), so it ends soon after its turn came, without touching production
    runs["third"] = airflow.trigger(
        DAG_ID, {**QUICK, **ONE_CANDIDATE, **LOOSE_SLO, "endpoint_name": APPROVED, "test_resources": NO_SUCH_GPU}
    )
    deadline = time.monotonic() + STORY_TIMEOUT_S
    while waiting or told.approved_endpoint_when_done is None:
        for role in sorted(waiting):
            tis = airflow.task_instances(DAG_ID, runs[role])
            if _act(airflow, client, told, role, tis):
                waiting.discard(role)
            elif tis["release_endpoint"]["state"] in ("success", "failed"):
                raise AssertionError(f"the {role} run ended before anyone acted: {_states(tis)}")
        if "approved" not in waiting:
            _watch_first_run(airflow, client, told)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not acted on within {STORY_TIMEOUT_S}s: "
                + "; ".join(
                    f"{role}: {_states(airflow.task_instances(DAG_ID, runs[role]))}" for role in sorted(waiting)
                )
            )
        time.sleep(POLL_S)
    return told


def _wait_for_claim(airflow: RealAirflow, run: str) -> None:
    deadline = time.monotonic() + STORY_TIMEOUT_S
    while (state := airflow.task_instances(DAG_ID, run)["claim_endpoint"]["state"]) != "success":
        assert state not in ("failed", "upstream_failed") and time.monotonic() < deadline, f"claim_endpoint {state}"
        time.sleep(POLL_S)


def _watch_first_run(airflow: RealAirflow, client: LocalRuntimeClient, story: Story) -> None:
    """Note what of the third run began while the first held the endpoint; once the first released
    it, keep the endpoint as the first left it."""
    third = _states(airflow.task_instances(DAG_ID, story.runs["third"]))  # read first: the first may end meanwhile
    released = airflow.task_instances(DAG_ID, story.runs["approved"])["release_endpoint"]["state"]
    if released not in ("success", "failed"):
        story.third_began_early |= {t for t, state in third.items() if state} - BEFORE_THE_CLAIM
        return
    deployments = [(d["name"], d["model"]) for d in client.list_deployments(APPROVED)]
    endpoint = client.get_endpoint(APPROVED)
    if endpoint["tags"].get(CLAIM_TAG, "").endswith(story.runs["third"]):
        # the third run, waiting for the endpoint, claimed it between the first's release and this look:
        # its mark, not the first run's; the endpoint is otherwise as the first left it
        endpoint = {**endpoint, "tags": {k: v for k, v in endpoint["tags"].items() if k != CLAIM_TAG}}
    story.approved_endpoint_when_done = (endpoint, deployments)


def _act(
    airflow: RealAirflow, client: LocalRuntimeClient, story: Story, role: str, tis: dict[str, dict[str, Any]]
) -> bool:
    """Do the one thing this run waits for, when it is time; True once done."""
    run, endpoint = story.runs[role], ENDPOINTS[role]
    if role == "killed":
        at = client.get_endpoint(endpoint)
        if tis["promote"]["state"] != "running" or at["traffic"] != {"blue": 50, "green": 50}:
            return False
        story.ledger_when_killed = Ledger.decode(at["tags"][ROLLOUT_TAG])
        story.killed_pid = airflow.kill_task(DAG_ID, run, "promote")
        return True
    if tis["approve_promotion"]["state"] != "awaiting_input" or not _parked(airflow, run):
        return False
    story.asked[role] = airflow.hitl_details(DAG_ID, run, "approve_promotion")
    story.traffic_when_asked[role] = client.get_endpoint(endpoint)["traffic"]
    if role == "approved":
        story.third_when_first_asked = _states(airflow.task_instances(DAG_ID, story.runs["third"]))
        story.test_endpoint_when_first_asked = _exists(client, f"{APPROVED}-test")
        airflow.answer_hitl(DAG_ID, run, "approve_promotion", ["Approve"])
    elif role == "rejected":
        airflow.answer_hitl(DAG_ID, run, "approve_promotion", ["Reject"])
    elif role == "timed_out":
        pass  # nobody answers
    else:  # as a person would in the UI: the approval task marked failed
        airflow.request(
            "PATCH", f"/dags/{DAG_ID}/dagRuns/{run}/taskInstances/approve_promotion", json={"new_state": "failed"}
        )
    return True


# --- 1. approval through the REST API ---------------------------------------------------------


def test_the_approval_asks_in_readable_markdown_naming_the_model_endpoint_and_traffic(story: Story) -> None:
    for role in ASKING:
        endpoint, asked = ENDPOINTS[role], story.asked[role]
        assert asked["subject"].startswith(f"Promote diabetes on endpoint {endpoint}? (no answer by "), asked
        assert asked["subject"].endswith(" UTC: rejected)"), asked
        assert asked["options"] == ["Approve", "Reject"] and asked["defaults"] == ["Reject"]
        body = asked["body"]
        assert isinstance(body, str) and not body.startswith("{"), body
        assert f"**Model diabetes:2** is rolling out on endpoint **{endpoint}** as deployment `green`" in body
        assert "Traffic now: blue 90 %, green 10 %." in body, body
        assert "| 1 | pass |" in body, "the 10 % step's gate verdict"
        within = "15 s" if role == "timed_out" else "24 h"
        assert f"**Answer within {within}, by " in body and "the rollout is **rejected** and rolled back" in body
        assert story.traffic_when_asked[role] == {"blue": 90, "green": 10}


def test_an_approved_rollout_completes_and_a_rejected_one_leaves_the_endpoint_as_before(
    airflow: RealAirflow, client: LocalRuntimeClient, story: Story
) -> None:
    airflow.wait_for(DAG_ID, story.runs["approved"], {"success"}, timeout=RUN_TIMEOUT_S)
    airflow.wait_for(DAG_ID, story.runs["rejected"], {"success"}, timeout=RUN_TIMEOUT_S)

    approved = _states(airflow.task_instances(DAG_ID, story.runs["approved"]))
    assert approved["continue_promotion"] == approved["summary"] == "success", approved
    assert approved["rollback_if_rejected"] == "skipped", approved
    assert airflow.hitl_details(DAG_ID, story.runs["approved"], "approve_promotion")["chosen_options"] == ["Approve"]
    rejected = _states(airflow.task_instances(DAG_ID, story.runs["rejected"]))
    assert rejected["continue_promotion"] == "skipped" and rejected["rollback_if_rejected"] == "success", rejected
    assert rejected["release_endpoint"] == "success", rejected
    summary = _xcom(airflow, story.runs["rejected"], "summary")
    assert summary["rollout"] == "rolled_back", summary
    assert summary["rollout_reason"] == "rejected by admin; rolled back to blue, green removed", summary
    assert_as_before(client, story, REJECTED)


def test_the_approved_rollout_ends_on_the_new_deployment_alone(story: Story) -> None:
    """As the first run left it, before the third run (which waited for it) touched the endpoint."""
    endpoint, deployments = story.approved_endpoint_when_done
    assert endpoint["traffic"] == {"green": 100} and endpoint["mirror_traffic"] == {}, endpoint
    assert deployments == [("green", "diabetes:2")], "the old deployment was deleted"
    assert CLAIM_TAG not in endpoint["tags"] and ROLLOUT_TAG not in endpoint["tags"], endpoint["tags"]
    assert endpoint["scoring_uri"] == story.before[APPROVED]["scoring_uri"]


def test_runs_for_two_endpoints_overlap_each_promote_within_the_other_run(airflow: RealAirflow, story: Story) -> None:
    first, second = story.runs["approved"], story.runs["rejected"]
    airflow.wait_for(DAG_ID, first, {"success"}, timeout=RUN_TIMEOUT_S)
    airflow.wait_for(DAG_ID, second, {"success"}, timeout=RUN_TIMEOUT_S)

    for mine, other in ((first, second), (second, first)):
        promote = airflow.task_instances(DAG_ID, mine)["promote"]
        run = airflow.get(f"/dags/{DAG_ID}/dagRuns/{other}")
        assert _at(promote["start_date"]) < _at(run["end_date"]), (promote, run)
        assert _at(run["start_date"]) < _at(promote["end_date"]), (promote, run)


# --- 2. a third run for a held endpoint -------------------------------------------------------


def test_a_third_run_for_a_held_endpoint_waits_deferred_then_goes_after_the_first_releases(
    airflow: RealAirflow, client: LocalRuntimeClient, story: Story
) -> None:
    waited = story.third_when_first_asked
    assert waited["validate"] == "success" and waited["claim_endpoint"] == "deferred", waited
    assert waited.get("register_model") is None and waited.get("create_test_endpoint") is None, waited
    assert story.third_began_early == set(), "tasks of the third run ran while the first held the endpoint"
    assert story.test_endpoint_when_first_asked is False, f"{APPROVED}-test exists while the first run holds it"

    airflow.wait_for(DAG_ID, story.runs["third"], {"failed"}, timeout=RUN_TIMEOUT_S)

    first = airflow.task_instances(DAG_ID, story.runs["approved"])
    third = airflow.task_instances(DAG_ID, story.runs["third"])
    released = _at(first["release_endpoint"]["end_date"])
    assert _at(third["claim_endpoint"]["end_date"]) >= released
    assert _at(third["create_test_endpoint"]["start_date"]) >= released, (first["release_endpoint"], third)
    states = _states(third)
    assert states["test_deployment"] == "failed" and states["teardown_test_endpoint"] == "success", states
    assert states["release_endpoint"] == "success", states
    assert not _exists(client, f"{APPROVED}-test")
    endpoint, deployments = client.get_endpoint(APPROVED), client.list_deployments(APPROVED)
    assert (endpoint, [(d["name"], d["model"]) for d in deployments]) == story.approved_endpoint_when_done, (
        "the third run, refused at its test deployment, left production as the first run left it"
    )


# --- 3. an approval that failed ---------------------------------------------------------------


def test_an_approval_marked_failed_leaves_the_endpoint_as_before_through_release_endpoint(
    airflow: RealAirflow, client: LocalRuntimeClient, story: Story
) -> None:
    run = story.runs["failed_approval"]
    airflow.wait_for(DAG_ID, run, {"failed"}, timeout=RUN_TIMEOUT_S)

    states = _states(airflow.task_instances(DAG_ID, run))
    assert states["approve_promotion"] == "failed" and states["continue_promotion"] == "upstream_failed", states
    assert states["rollback_if_rejected"] != "success", "the rollback is release_endpoint's here"
    assert states["release_endpoint"] == "success", states
    assert_as_before(client, story, FAILED_APPROVAL)


def test_an_approval_nobody_answers_is_rejected_at_its_deadline_and_leaves_the_endpoint_as_before(
    airflow: RealAirflow, client: LocalRuntimeClient, story: Story
) -> None:
    run = story.runs["timed_out"]
    airflow.wait_for(DAG_ID, run, {"success"}, timeout=RUN_TIMEOUT_S)

    states = _states(airflow.task_instances(DAG_ID, run))
    assert states["approve_promotion"] == "success" and states["continue_promotion"] == "skipped", states
    assert states["rollback_if_rejected"] == states["summary"] == states["release_endpoint"] == "success", states
    answered = airflow.hitl_details(DAG_ID, run, "approve_promotion")
    assert answered["chosen_options"] == ["Reject"] and answered["responded_by_user"] is None, answered
    waited = (_at(answered["responded_at"]) - _at(answered["created_at"])).total_seconds()
    assert 60 * APPROVAL_TIMEOUT_MIN <= waited < 60 * APPROVAL_TIMEOUT_MIN + 30, f"answered by default after {waited} s"
    answer = _xcom(airflow, run, "approve_promotion")
    assert answer["timed_out"] is True and answer["timeout_s"] == 60 * APPROVAL_TIMEOUT_MIN, answer
    summary = _xcom(airflow, run, "summary")
    assert summary["rollout"] == "rolled_back", summary
    assert summary["rollout_reason"] == (
        "timed out: nobody answered the approval within 15 s, so it was rejected by default; "
        "rolled back to blue, green removed"
    ), summary
    record = json.loads(Path(summary["decision_record"]).read_text())
    assert record["outcome"] == "rolled_back" and record["reason"].startswith("timed out"), record
    assert [e["kind"] for e in record["events"]][-3:] == ["approval", "approval", "rollback"], record["events"]
    assert record["events"][-1]["traffic"] == {"blue": 100}
    assert "rolled back" in Path(summary["rollout_timeline"]).read_text().lower()
    assert_as_before(client, story, TIMED_OUT)


# --- 4. kill -9 of the promote task -----------------------------------------------------------


def test_a_promote_task_killed_at_50_percent_is_retried_and_resumes_from_the_endpoints_ledger(
    airflow: RealAirflow, client: LocalRuntimeClient, story: Story
) -> None:
    run = story.runs["killed"]
    ledger = story.ledger_when_killed
    assert ledger is not None and (ledger.run, ledger.new, ledger.old) == (f"{DAG_ID}/{run}", "green", "blue")

    airflow.wait_for(DAG_ID, run, {"success"}, timeout=RUN_TIMEOUT_S)

    promote = airflow.task_instances(DAG_ID, run)["promote"]
    assert promote["try_number"] == 2 and promote["pid"] != story.killed_pid
    tries = airflow.task_tries(DAG_ID, run, "promote")
    assert [(t["try_number"], t["state"]) for t in tries] == [(1, "failed"), (2, "success")]
    retry_log = _task_log(airflow, run, "promote", 2)
    assert "resuming this run's rollout of green over blue" in retry_log
    assert "take traffic" not in retry_log
    summary = _xcom(airflow, run, "summary")
    assert (summary["rollout"], summary["deployment"], summary["replaced"]) == ("completed", "green", "blue")
    endpoint = client.get_endpoint(KILLED)
    assert endpoint["traffic"] == {"green": 100} and endpoint["mirror_traffic"] == {}
    assert [d["name"] for d in client.list_deployments(KILLED)] == ["green"]
    assert client.get_deployment(KILLED, "green")["model"] == "diabetes:2"
    assert CLAIM_TAG not in endpoint["tags"] and ROLLOUT_TAG not in endpoint["tags"]


# --- helpers ----------------------------------------------------------------------------------


def assert_as_before(client: LocalRuntimeClient, story: Story, endpoint: str) -> None:
    """Old deployment at 100 %, the new one removed, no claim or ledger left: the endpoint as before the run."""
    before, after = story.before[endpoint], client.get_endpoint(endpoint)
    assert after["traffic"] == {"blue": 100} and after["mirror_traffic"] == {}, after
    assert after["tags"] == before["tags"], "claim and ledger tags removed"
    assert after["scoring_uri"] == before["scoring_uri"]
    assert [(d["name"], d["model"]) for d in client.list_deployments(endpoint)] == [("blue", "diabetes:1")]


def _parked(airflow: RealAirflow, run: str) -> bool:
    """Whether the scheduler has taken in that the approval task's first process ended, parked.

    Airflow 3.3 races here: answered before that (within a second or two of asking, on a busy
    machine), the resumed task is running when the parked process's exit reaches the scheduler,
    which takes it for an external kill, fails the try and asks again. A person reads the body
    first; a script must wait for this line.
    """
    finished = f"TaskInstance Finished: dag_id={DAG_ID}, task_id=approve_promotion, run_id={run},"
    log = airflow.log_path("scheduler").read_text(errors="replace").splitlines()
    return any(finished in line and "state=awaiting_input" in line for line in log)


def _exists(client: LocalRuntimeClient, endpoint: str) -> bool:
    try:
        client.get_endpoint(endpoint)
    except RuntimeClientError as e:
        if e.status_code == 404:
            return False
        raise
    return True


def _states(tis: dict[str, dict[str, Any]]) -> dict[str, str | None]:
    return {task_id: ti["state"] for task_id, ti in tis.items()}


def _xcom(airflow: RealAirflow, run: str, task_id: str) -> Any:
    entry = airflow.get(f"/dags/{DAG_ID}/dagRuns/{run}/taskInstances/{task_id}/xcomEntries/return_value")
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) else value


def _task_log(airflow: RealAirflow, run: str, task_id: str, try_number: int) -> str:
    (path,) = (airflow.home / "logs").glob(f"dag_id={DAG_ID}/run_id={run}/task_id={task_id}/attempt={try_number}.log")
    return path.read_text()


def _at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)
