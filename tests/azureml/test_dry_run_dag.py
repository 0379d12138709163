"""A dry run of the real-time DAG against an ``azure_ml`` connection, with no network: every
request the run would send to Azure ML is recorded, valid against the specification, and none
leaves the machine (the package's conftest refuses to resolve any host but loopback).

Only the scoring is left out: the smoke test, the stress load, the profile's load and the rollout's
probe are recorded, not sent, and what their answers would decide is "not judged" or assumed, so
the production promotion's requests are in the list too. Two runs against one dry-run folder are a
first release and a second one: the simulated workspace keeps what the first created."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from deployflow.azureml.dry_run import ASSUMPTIONS_FILE, REQUESTS_FILE
from deployflow.rollout import load_plan
from deployflow.rollout.steps import MirrorStep, TrafficStep
from tests.airflow_support import run_dag, task_states, xcom

pytestmark = pytest.mark.slow

CONN_ID = "aml_rehearsal"
WORKSPACE = {
    "subscription_id": "11111111-2222-3333-4444-555555555555",
    "resource_group": "rg-ml",
    "workspace_name": "ws",
}


@pytest.fixture
def dag():  # noqa: ANN201 - a DAG
    import dags.realtime_deployment as module

    return importlib.reload(module).dag


@pytest.fixture
def folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A real azure_ml connection, with a service principal, that has never seen a network."""
    connection = {
        "conn_type": "azure_ml",
        "login": "client-id",
        "password": "sp-secret-never-written",
        "extra": {**WORKSPACE, "tenant_id": "tenant-x", "dry_run_dir": str(tmp_path / "dry-run")},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    return tmp_path / "dry-run"


def _requests(folder: Path, run_id: str | None = None) -> list[dict]:
    entries = [json.loads(line) for line in (folder / REQUESTS_FILE).read_text().splitlines()]
    return [e for e in entries if run_id is None or e.get("run_id") == run_id]


def _calls(requests: list[dict]) -> list[tuple[str, str]]:
    return [(r["method"], r["url"].split("/workspaces/ws", 1)[-1]) for r in requests]


def _traffic_moves(requests: list[dict], endpoint: str) -> list[tuple[dict, dict]]:
    """The (traffic, mirror) of each endpoint update the promotion sent, repeats (tag writes) left out."""
    moves: list[tuple[dict, dict]] = []
    for r in requests:
        if r["task_id"] == "promote" and r["method"] == "PUT" and r["url"].endswith(f"/onlineEndpoints/{endpoint}"):
            shares = r["body"]["properties"]
            move = tuple({k: v for k, v in (shares.get(f) or {}).items() if v} for f in ("traffic", "mirrorTraffic"))
            if not moves or moves[-1] != move:
                moves.append(move)
    return moves


def _planned_moves(new: str, old: str, *, mirror: bool) -> list[tuple[dict, dict]]:
    """What the default plan's steps ask of the endpoint, from all traffic on ``old``."""
    moves: list[tuple[dict, dict]] = [({old: 100}, {})]
    for step in load_plan().steps:
        if isinstance(step, MirrorStep) and mirror:
            moves.append(({old: 100}, {new: step.percent}))
        elif isinstance(step, TrafficStep):
            moves.append(({k: v for k, v in {old: 100 - step.percent, new: step.percent}.items() if v}, {}))
    return moves


def _run(dag, conf: dict) -> object:  # noqa: ANN001 - a DAG
    dag_run = run_dag(dag, conf, retries=0)
    states = task_states(dag_run)
    skipped = {"approve_promotion", "continue_promotion"}  # no approval asked: the plan has no approval step
    assert {t: s for t, s in states.items() if s != "success"} == dict.fromkeys(skipped, "skipped"), states
    return dag_run


TARGETS = {
    # production on an attached Kubernetes cluster (the DAG's default): Azure ML cannot mirror there
    "kubernetes": {"endpoint_name": "diabetes", "production_pool": "production"},
    # production on a managed endpoint: the plan's mirror step is played too
    "managed": {"endpoint_name": "fraud", "production_pool": ""},
}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_dry_run_of_the_realtime_dag_plays_every_step_and_sends_nothing(dag, folder: Path, target: str) -> None:
    params = TARGETS[target]
    endpoint = params["endpoint_name"]
    conf = {"ml_platform_conn_id": CONN_ID, "dry_run": True, "test_compute": None, **params}
    first = _run(dag, conf)
    second = _run(dag, conf)  # the same folder: the simulated workspace holds what the first run created

    everything = _requests(folder)
    print("\n".join(f"{r['task_id']:24} {r['method']:6} {r['url']}" for r in everything))  # for whoever runs it
    assert {r.get("run_id") for r in everything} == {first.run_id, second.run_id}
    assert all(r["sent"] is False for r in everything)
    checked = [r for r in everything if r["spec"]]
    assert len(checked) >= 30 and all(r["valid"] for r in checked), [r["errors"] for r in checked if r["errors"]]
    text = (folder / REQUESTS_FILE).read_text() + (folder / ASSUMPTIONS_FILE).read_text()
    assert "sp-secret-never-written" not in text
    keys = json.loads((folder / "workspace.json").read_text())["keys"]
    assert keys and not any(str(v) in text for key in keys.values() for v in key.values() if len(str(v)) > 8)

    # first release: the test deployment, then the platform calls after each unsent scoring step
    one = _requests(folder, first.run_id)
    calls = _calls(one)
    assert ("GET", "") in calls  # preflight reached the workspace
    assert ("PUT", "/models/diabetes/versions/1") in calls
    assert ("PUT", f"/onlineEndpoints/{endpoint}-test/deployments/candidate") in calls
    scoring = {r["task_id"] for r in one if r.get("note")}
    assert scoring == {"smoke_test", "stress_load", "profile_load", "promote"}  # each recorded, none sent
    assert ("POST", f"/onlineEndpoints/{endpoint}-test/listKeys") in calls
    for name in ("stress", "prof-0", "prof-1", "prof-2", "prof-3"):  # created and deleted, load not sent
        assert ("PUT", f"/onlineEndpoints/{endpoint}-stress/deployments/{name}") in calls
    for name in ("prof-0", "prof-1", "prof-2", "prof-3"):
        assert ("DELETE", f"/onlineEndpoints/{endpoint}-stress/deployments/{name}") in calls
    assert ("DELETE", f"/onlineEndpoints/{endpoint}-stress") in calls
    profile = xcom(first, "profile")
    assert profile["assumed"] is True and profile["recommendedConfig"] == "cpu0.25-mem0.5"  # the cheapest declared
    production = next(r for r in one if r["method"] == "PUT" and r["url"].endswith(f"/{endpoint}/deployments/blue"))
    properties = production["body"]["properties"]
    if target == "kubernetes":
        assert properties["instanceType"] == "cpu250m-mem512mi"  # what the profile chose, as the cluster names it
        assert properties["scaleSettings"] == {"scaleType": "Default"}
    else:
        assert properties["instanceType"] == "Standard_F2s_v2"
    assert _traffic_moves(one, endpoint) == [({"blue": 100}, {})]  # a first release takes all traffic
    assert xcom(first, "promote")["status"] == "first_release"

    # second release: the plan's steps, in order, then the old deployment deleted
    two = _requests(folder, second.run_id)
    calls = _calls(two)
    assert ("PUT", f"/onlineEndpoints/{endpoint}/deployments/green") in calls
    assert _traffic_moves(two, endpoint) == _planned_moves("green", "blue", mirror=target == "managed")
    last_move = max(i for i, c in enumerate(calls) if c == ("PUT", f"/onlineEndpoints/{endpoint}"))
    deleted = calls.index(("DELETE", f"/onlineEndpoints/{endpoint}/deployments/blue"))
    assert deleted > max(i for i, r in enumerate(two) if r.get("note"))  # after the bake
    assert deleted <= last_move  # the ledger is cleared after the delete
    assert not any(c == ("DELETE", f"/onlineEndpoints/{endpoint}") for c in calls)  # production stays

    rollout = xcom(second, "promote")
    assert rollout["status"] == "completed" and rollout["old"] == "blue" and rollout["new"] == "green"
    record = json.loads(Path(rollout["decision_record"]).read_text())
    gated = [s for s in load_plan().steps if getattr(s, "gated", False)]
    expected = len([s for s in gated if target == "managed" or not isinstance(s, MirrorStep)]) + 1  # + the bake
    assert [w["verdict"] for w in record["windows"]] == ["not judged"] * expected
    assert all(w["reasons"][0].startswith("not judged (dry run)") and w["new"] is None for w in record["windows"])

    assumed = [json.loads(line)["assumed"] for line in (folder / ASSUMPTIONS_FILE).read_text().splitlines()]
    assert any(a.startswith("compute test is an attached Kubernetes cluster") for a in assumed), assumed
    assert any("cheapest declared candidate, cpu0.25-mem0.5" in a for a in assumed), assumed
    assert sum("not judged (dry run), taken as passed" in a for a in assumed) >= expected


def test_a_dry_run_with_an_approval_step_takes_it_as_approved_and_does_not_wait(dag, folder: Path) -> None:
    """A dry run moves no real traffic: its approval step is recorded as assumed, and nobody is asked."""
    conf = {"ml_platform_conn_id": CONN_ID, "dry_run": True, "test_compute": None, **TARGETS["kubernetes"]}
    _run(dag, conf)  # the first release
    steps = ["traffic 10% 30s", "approve timeout 1h", "traffic 100%"]
    second = _run(dag, {**conf, "approval": True, "rollout_plan": {"steps": steps}})
    rollout = xcom(second, "promote")
    assert rollout["status"] == "completed", rollout  # not awaiting_approval: approve_promotion was skipped
    record = json.loads(Path(rollout["decision_record"]).read_text())
    [event] = [e for e in record["events"] if e["kind"] == "approval"]
    assert event["line"] == "approval at step 2 of diabetes: not judged (dry run), taken as approved"
    assumed = [json.loads(line)["assumed"] for line in (folder / ASSUMPTIONS_FILE).read_text().splitlines()]
    [line] = [a for a in assumed if a.startswith("approval at step 2")]
    assert "a real run asks: " in line
    moves = _traffic_moves(_requests(folder, second.run_id), "diabetes")
    assert moves == [({"blue": 100}, {}), ({"blue": 90, "green": 10}, {}), ({"green": 100}, {})]
