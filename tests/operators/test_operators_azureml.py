"""The operators on an ``azure_ml`` connection: the real backend and SDK over the fake workspace's
HTTP transport, which checks every request body against Azure ML's REST specification.

The connection is a real Airflow connection (from the environment). The hook's own credential
handling is checked on a spec'd MLClient (the secret never shows); the tasks run against the
transport.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from unittest.mock import MagicMock, patch

import pytest
from airflow.sdk import DAG
from azure.ai.ml import MLClient

from deployflow.azureml import AzureMLPlatform, RetryPolicy, attach_shared_aks
from deployflow.azureml.aks import instance_type_manifest
from deployflow.hooks.ml_platform import MLPlatformHook
from deployflow.operators.deployment import CreateDeploymentOperator, DeleteDeploymentOperator
from deployflow.operators.endpoint import CreateOrUpdateEndpointOperator
from deployflow.platform import Resources
from tests.airflow_support import run_dag, task_states
from tests.azureml.support import make_ml_client, poller
from tests.azureml.transport import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, FakeAzureML, FakeCredential
from tests.runtime.support import SAMPLE_MODEL

CONN_ID = "aml_test"
AKS_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-aks"
    "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)
SECRET = "sp-secret-value-never-logged"
TENANT = "tenant-0000-never-logged"


@pytest.fixture
def ml_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[MagicMock]:
    connection = {
        "conn_type": "azure_ml",
        "login": "client-id",
        "password": SECRET,
        "extra": {"subscription_id": "sub-1", "resource_group": "rg-1", "workspace_name": "ws", "tenant_id": TENANT},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    client = make_ml_client()
    with patch("deployflow.azureml.backend.MLClient", return_value=client) as constructor:
        yield client
    assert constructor.call_args.kwargs["subscription_id"] == "sub-1"
    assert constructor.call_args.kwargs["workspace_name"] == "ws"


def test_the_connection_type_chooses_the_azure_ml_backend(ml_client: MagicMock) -> None:
    platform = MLPlatformHook(ml_platform_conn_id=CONN_ID).platform
    assert platform.kind == "azureml"
    assert SECRET not in repr(platform) and TENANT not in repr(platform)


def _endpoint_then_deployment_dag(**deployment: Any) -> DAG:
    with DAG("aml_operators", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        endpoint = CreateOrUpdateEndpointOperator(
            task_id="endpoint", ml_platform_conn_id=CONN_ID, endpoint_name="diabetes-prod", compute="aks-prod"
        )
        deploy = CreateDeploymentOperator(
            task_id="deploy",
            ml_platform_conn_id=CONN_ID,
            endpoint_name="diabetes-prod",
            deployment_name="green",
            model="diabetes:3",
            package_path=str(SAMPLE_MODEL),
            instance_resources={"cpu": 0.5, "memory_gb": 1.5},
            instance_count=2,
            poll_interval=0.01,
            **deployment,
        )
        endpoint >> deploy
    return dag


@pytest.fixture
def workspace(monkeypatch: pytest.MonkeyPatch, fake_azure: FakeAzureML, retry: RetryPolicy) -> FakeAzureML:
    """The connection's tasks (and triggers) get the real backend and SDK over the fake workspace's transport."""
    import deployflow.hooks.ml_platform as hooks

    def platform(conn: Any, dry_run: bool = False) -> AzureMLPlatform:
        client = MLClient(FakeCredential(), SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE, transport=fake_azure,
                          enable_telemetry=False, show_progress=False)  # fmt: skip
        return AzureMLPlatform(client, retry=retry)

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "azure_ml"}))
    monkeypatch.setattr(hooks, "platform_from_connection", platform)
    attach_shared_aks([platform(None)], compute_name="aks-prod", resource_id=AKS_ID, namespace="ml", timeout_s=30)
    fake_azure.define_instance_types("aks-prod", [instance_type_manifest(Resources(cpu=0.5, memory_gb=1.5))])
    platform(None).register_model("diabetes", str(SAMPLE_MODEL), version="3")
    return fake_azure


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker waits", "trigger waits"])
def test_endpoint_and_deployment_on_attached_aks(workspace: FakeAzureML, deferrable: bool) -> None:
    dag_run = run_dag(_endpoint_then_deployment_dag(deferrable=deferrable), retries=0)

    assert task_states(dag_run) == {"endpoint": "success", "deploy": "success"}
    assert workspace.refused == [], workspace.refused
    [endpoint] = [r.body for r in workspace.requests_to("PUT", r"/onlineEndpoints/diabetes-prod$")]
    assert endpoint["properties"]["compute"].endswith("/computes/aks-prod")
    [deployment] = [r.body for r in workspace.requests_to("PUT", r"/onlineEndpoints/diabetes-prod/deployments/green$")]
    properties = deployment["properties"]
    assert (properties["endpointComputeType"], deployment["sku"]["capacity"]) == ("Kubernetes", 2)
    requests = properties["containerResourceRequirements"]["containerResourceRequests"]
    assert (requests["cpu"], requests["memory"]) == ("500m", "1536Mi")


def test_deleting_a_deployment_that_takes_live_traffic_is_refused(workspace: FakeAzureML) -> None:
    run_dag(_endpoint_then_deployment_dag(deferrable=False), retries=0)
    import deployflow.hooks.ml_platform as hooks

    hooks.platform_from_connection(None).set_traffic("diabetes-prod", traffic={"green": 100}, timeout_s=30)
    with DAG("aml_delete", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        DeleteDeploymentOperator(
            task_id="delete", ml_platform_conn_id=CONN_ID, endpoint_name="diabetes-prod", deployment_name="green"
        )

    dag_run = run_dag(dag, retries=0)

    assert task_states(dag_run)["delete"] == "failed"
    assert not workspace.requests_to("DELETE", r"/deployments/green$")


def test_attach_shared_aks_to_two_workspaces_skips_the_one_that_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.ai.ml.entities import KubernetesCompute

    from deployflow.operators.aks import AttachSharedAksOperator

    cluster = "/subscriptions/sub-1/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/shared"
    clients = {"ws-a": make_ml_client("ws-a"), "ws-b": make_ml_client("ws-b")}
    for workspace in clients:
        extra = {"subscription_id": "sub-1", "resource_group": "rg-1", "workspace_name": workspace}
        monkeypatch.setenv(
            f"AIRFLOW_CONN_AML_{workspace[-1].upper()}", json.dumps({"conn_type": "azure_ml", "extra": extra})
        )
    from azure.core.exceptions import ResourceNotFoundError

    clients["ws-a"].compute.get.side_effect = ResourceNotFoundError("no such compute")
    clients["ws-a"].compute.begin_create_or_update.return_value = poller()
    clients["ws-b"].compute.get.return_value = KubernetesCompute(
        name="aks-prod", resource_id=cluster, namespace="models"
    )
    with DAG("aml_attach", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        AttachSharedAksOperator(
            task_id="attach",
            ml_platform_conn_ids=["aml_a", "aml_b"],
            compute_name="aks-prod",
            resource_id=cluster,
            namespace="models",
        )

    with (
        patch("deployflow.azureml.backend.MLClient", side_effect=lambda **kw: clients[kw["workspace_name"]]),
        patch("azure.identity.DefaultAzureCredential"),
    ):
        dag_run = run_dag(dag, retries=0)

    assert task_states(dag_run) == {"attach": "success"}
    sent = clients["ws-a"].compute.begin_create_or_update.call_args.args[0]
    assert (sent.name, sent.resource_id, sent.namespace) == ("aks-prod", cluster, "models")
    clients["ws-b"].compute.begin_create_or_update.assert_not_called()
