"""A dry run of the real-time DAG against an ``azure_ml`` connection, with no network: every
request the run would send to Azure ML is recorded, valid against the specification, and none
leaves the machine (the package's conftest refuses to resolve any host but loopback)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from deployflow.azureml.dry_run import REQUESTS_FILE
from tests.airflow_support import run_dag, task_states

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


def test_a_dry_run_of_the_realtime_dag_records_every_request_and_sends_none(dag, folder: Path) -> None:
    dag_run = run_dag(
        dag,
        {"ml_platform_conn_id": CONN_ID, "dry_run": True, "endpoint_name": "diabetes", "test_compute": None},
        retries=0,
    )

    states = task_states(dag_run)
    ran = ("preflight", "validate", "claim_endpoint", "register_model", "create_test_endpoint", "test_deployment")
    assert {t: states[t] for t in ran} == dict.fromkeys(ran, "success"), states
    # the smoke test calls the scoring URI: recorded, not sent, skipped (and what needs its answers with it)
    assert states["smoke_test"] == states["promote"] == "skipped"
    assert states["teardown_test_endpoint"] == states["release_endpoint"] == "success"

    requests = [json.loads(line) for line in (folder / REQUESTS_FILE).read_text().splitlines()]
    print("\n".join(f"{r['method']:6} {r['url']}" for r in requests))  # the request list, for whoever runs it
    this_run = {r.get("run_id") for r in requests}
    assert this_run == {dag_run.run_id}
    calls = [(r["method"], r["url"].split("/workspaces/ws", 1)[-1]) for r in requests]
    assert ("GET", "") in calls  # preflight reached the workspace
    assert ("PUT", "/models/diabetes/versions/1") in calls
    assert ("PUT", "/onlineEndpoints/diabetes") in calls  # the production endpoint, claimed
    assert ("PUT", "/onlineEndpoints/diabetes-test") in calls
    assert ("PUT", "/onlineEndpoints/diabetes-test/deployments/candidate") in calls
    assert ("DELETE", "/onlineEndpoints/diabetes-test") in calls
    scoring = [r for r in requests if r.get("note")]
    assert scoring and scoring[0]["url"] == "https://diabetes-test.westeurope.inference.ml.azure.com/score"
    checked = [r for r in requests if r["spec"]]
    assert len(checked) >= 6 and all(r["valid"] for r in checked), [r["errors"] for r in checked if r["errors"]]
    claim = next(r for r in requests if r["method"] == "PUT" and r["url"].endswith("/onlineEndpoints/diabetes"))
    assert claim["body"]["properties"]["compute"].endswith("/computes/production")
    candidate = next(r for r in requests if r["url"].endswith("/deployments/candidate") and r["method"] == "PUT")
    assert candidate["body"]["properties"]["instanceType"] == "Standard_DS3_v2"
    assert all(r["sent"] is False for r in requests)
    assert "sp-secret-never-written" not in (folder / REQUESTS_FILE).read_text()
