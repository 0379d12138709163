"""Preflight through the real SDK against the fake workspace: what a run needs, read before it creates anything."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException
from azure.core.exceptions import ClientAuthenticationError

from deployflow.azureml import attach_shared_aks
from deployflow.azureml.aks import instance_type_manifest
from deployflow.azureml.preflight import PlannedCluster, PlannedEndpoint, preflight
from deployflow.operators.preflight import PreflightOperator
from deployflow.platform import Resources
from tests.airflow_support import run_dag, task_states
from tests.azureml.transport import WORKSPACE_ID, FakeAzureML

AKS_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-aks"
    "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)
SMALL, LARGE = Resources(cpu=0.5, memory_gb=1.0), Resources(cpu=1.0, memory_gb=2.0)


@pytest.fixture
def aks(azure_platform, fake_azure: FakeAzureML) -> str:
    attach_shared_aks([azure_platform], compute_name="aks-prod", resource_id=AKS_ID, namespace="ml", timeout_s=30)
    fake_azure.define_instance_types("aks-prod", [instance_type_manifest(SMALL), instance_type_manifest(LARGE)])
    return "aks-prod"


def managed_deployment(fake: FakeAzureML, endpoint: str, name: str, size: str, count: int) -> None:
    fake.put_resource(f"onlineEndpoints/{endpoint}", {"location": "westeurope", "properties": {"authMode": "Key"}})
    fake.put_resource(
        f"onlineEndpoints/{endpoint}/deployments/{name}",
        {
            "location": "westeurope",
            "sku": {"name": "Default", "capacity": count},
            "properties": {
                "endpointComputeType": "Managed",
                "instanceType": size,
                "model": f"{WORKSPACE_ID}/models/diabetes/versions/1",
                "scaleSettings": {"scaleType": "Default"},
            },
        },
    )


def kubernetes_deployment(fake: FakeAzureML, endpoint: str, name: str, resources: Resources, count: int) -> None:
    fake.put_resource(
        f"onlineEndpoints/{endpoint}",
        {"location": "westeurope", "properties": {"authMode": "Key", "compute": f"{WORKSPACE_ID}/computes/aks-prod"}},
    )
    requests = {"cpu": f"{int(resources.cpu * 1000)}m", "memory": f"{int(resources.memory_gb * 1024)}Mi"}
    fake.put_resource(
        f"onlineEndpoints/{endpoint}/deployments/{name}",
        {
            "location": "westeurope",
            "sku": {"name": "Default", "capacity": count},
            "properties": {
                "endpointComputeType": "Kubernetes",
                "model": f"{WORKSPACE_ID}/models/diabetes/versions/1",
                "scaleSettings": {"scaleType": "Default"},
                "containerResourceRequirements": {"containerResourceRequests": requests},
            },
        },
    )


def test_a_ready_workspace_passes_and_says_what_it_could_not_check(azure_platform, fake_azure, aks) -> None:
    kubernetes_deployment(fake_azure, "ep-prod", "blue", LARGE, count=2)
    before = len(fake_azure.sent)

    report = preflight(
        azure_platform,
        endpoints=[
            PlannedEndpoint("ep-test", None, (Resources(instance_type="Standard_DS3_v2"),)),
            PlannedEndpoint("ep-prod", aks, (SMALL, LARGE), instance_count=2),
        ],
    )

    assert report.ok, report.problems
    assert "the credential gives a token for Azure Resource Manager" in report.passed
    assert f"compute {aks} defines cpu1-mem2gi, cpu500m-mem1gi" in report.passed
    # 1 instance + the 20 % reserve rounds up to 2 x 4 vCPUs
    assert any(p.startswith("VM family standardDSv2Family in westeurope: 8 vCPUs needed") for p in report.passed)
    (capacity,) = [u for u in report.unchecked if u.startswith("cluster capacity")]
    assert "current deployment(s) request 2 cpu / 4 GiB" in capacity
    assert "the new one up to 2 cpu / 4 GiB" in capacity and "needs 4 cpu / 8 GiB" in capacity
    # read only: nothing was written
    assert {s.method for s in fake_azure.sent[before:]} == {"GET"}


def test_every_problem_is_named_at_once(azure_platform, fake_azure, aks) -> None:
    managed_deployment(fake_azure, "ep-test", "blue", "Standard_DS3_v2", count=4)  # 16 of 24 vCPUs in use
    kubernetes_deployment(fake_azure, "ep-moved", "blue", SMALL, count=1)

    report = preflight(
        azure_platform,
        endpoints=[
            PlannedEndpoint("ep-test", None, (Resources(instance_type="Standard_DS3_v2"),), instance_count=2),
            PlannedEndpoint("ep-stress", "aks-test", (SMALL,)),
            PlannedEndpoint("ep-prod", aks, (Resources(cpu=4, memory_gb=16), SMALL)),
            PlannedEndpoint("ep-moved", None, (Resources(instance_type="Standard_NC6_v9"),)),
        ],
        clusters=[PlannedCluster("cpu-cluster", 2)],
    )

    problems = "\n".join(report.problems)
    assert not report.ok
    assert "12 vCPUs needed for 3 x Standard_DS3_v2" in problems and "8 free of 24" in problems
    assert "compute aks-test does not exist" in problems
    assert "does not define instance type(s) cpu4-mem16gi" in problems and "render_instance_types" in problems
    assert "endpoint ep-moved exists on aks-prod, but the run puts it on managed compute" in problems
    assert "VM size Standard_NC6_v9 (for endpoint ep-moved) is not offered in region westeurope" in problems
    assert "compute cpu-cluster does not exist" in problems


def test_a_credential_that_gives_no_token_stops_before_any_request(azure_platform, fake_azure) -> None:
    class Refusing:
        def get_token(self, *scopes, **kwargs):
            raise ClientAuthenticationError("AADSTS7000215: Invalid client secret provided. tenant 8e1f...")

    azure_platform.ml_client._credential = Refusing()

    report = preflight(azure_platform, endpoints=[PlannedEndpoint("ep-test", None, ())])

    (problem,) = report.problems
    assert "authentication failed; check the connection's credential" in problem and "AADSTS" not in problem
    assert fake_azure.sent == []


def test_a_batch_cluster_too_small_for_the_job(azure_platform, fake_azure) -> None:
    azure_platform.ensure_batch_cluster("cpu-cluster", size="Standard_DS3_v2", max_instances=2, timeout_s=30)

    report = preflight(azure_platform, clusters=[PlannedCluster("cpu-cluster", 4)])

    assert report.problems == [
        "compute cluster cpu-cluster scales to 2 node(s), but the batch job asks for 4: raise its max instances, "
        "or lower instance_count"
    ]


def test_the_operator_fails_the_task_naming_each_thing_to_fix(monkeypatch, azure_platform, fake_azure) -> None:
    import deployflow.hooks.ml_platform as hooks

    monkeypatch.setenv("AIRFLOW_CONN_AML_PREFLIGHT", json.dumps({"conn_type": "azure_ml"}))
    monkeypatch.setattr(hooks, "platform_from_connection", lambda conn, dry_run=False: azure_platform)
    endpoints = [
        {"name": "ep-test", "compute": None, "resources": [{"instance_type": "Standard_DS3_v2"}]},
        {"name": "ep-prod", "compute": "aks-missing", "resources": [], "candidates": None},
    ]
    with DAG("aml_preflight", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        operator = PreflightOperator(task_id="preflight", ml_platform_conn_id="aml_preflight", endpoints=endpoints)

    with pytest.raises(AirflowFailException) as failed:
        operator.execute({})
    dag_run = run_dag(dag, retries=0)

    assert str(failed.value).startswith("preflight found 1 thing(s) to fix before the run creates anything:")
    assert "compute aks-missing does not exist in workspace ws-prod" in str(failed.value)
    assert task_states(dag_run) == {"preflight": "failed"}
    # the failure was decided on reads alone
    assert {s.method for s in fake_azure.sent} == {"GET"}
